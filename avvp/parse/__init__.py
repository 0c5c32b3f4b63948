"""`avvp-parse`: any video → an event timeline (JSON), a picture (PNG) and optionally an HTML page.

    timeline.py  prediction arrays of consecutive 10 s windows → gated, merged events in seconds
    figure.py    the timeline as a PNG in the style of the papers' qualitative examples
    html.py      a self-contained page: the video, the timeline as SVG, a cursor synced to playback
    run.py       checkpoint → the features it needs → extraction per window → model → outputs
"""
from avvp.parse.timeline import Event, Timeline, TimelineConfig, WindowPrediction, build_timeline

__all__ = ["Event", "Timeline", "TimelineConfig", "WindowPrediction", "build_timeline"]
