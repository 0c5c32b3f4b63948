"""Acquisition: bring the source videos onto disk, the first stage of the flow (before decode).

`avvp.acquire.download` fetches LLP clips the way the official download scripts make them (yt-dlp,
then the official ffmpeg trim) and records each id in a crash-safe manifest (`avvp.acquire.manifest`),
which the extraction stage reads back as the per-video source information of the store.
"""
