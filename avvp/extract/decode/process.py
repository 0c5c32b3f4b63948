"""Running the ffmpeg tools: which binaries (`AVVP_FFMPEG` / `AVVP_FFPROBE`, read when a process
starts), how a local file is named on their command line, `run_ffmpeg` (one process, several output
pipes drained by threads), and the audio output arguments and channel averaging both backends share.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from typing import Any, Callable, Sequence

import numpy as np

from avvp.extract.decode.video import RESAMPLERS, DecodeError, DecodeOptions


# every ffmpeg run: never read stdin (a worker's stdin is not ours), no banner, errors only on stderr
FFMPEG_GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error")


def ffmpeg_binary() -> str:
    """The ffmpeg to run: `$AVVP_FFMPEG`, else `ffmpeg` on PATH. Read at every process start (not at
    import), so setting the variable after avvp is imported takes effect."""
    return os.environ.get("AVVP_FFMPEG", "ffmpeg")


def ffprobe_binary() -> str:
    """The ffprobe to run: `$AVVP_FFPROBE`, else `ffprobe` on PATH (read at every probe)."""
    return os.environ.get("AVVP_FFPROBE", "ffprobe")


def ffmpeg_input_path(path: str | os.PathLike) -> str:
    """An argument ffmpeg reads as a local file: `file:` stops a colon in the name from being taken
    for a protocol ("clip:1.mp4"); the absolute path stops a leading '-' from being an option."""
    return "file:" + os.path.abspath(os.fspath(path))


def require_binary(name: str) -> None:
    if shutil.which(name) is None:
        raise DecodeError(f"{name} not found on PATH; install ffmpeg (Debian: apt-get install ffmpeg)")


class _PipeReader(threading.Thread):
    """Drains one pipe into memory on a thread, so several ffmpeg outputs can be read at once
    without ffmpeg blocking on a full pipe."""

    def __init__(self, fileobj, limit: int | None = None):
        super().__init__(daemon=True)
        self.fileobj = fileobj
        self.limit = limit  # keep only the last `limit` bytes (stderr)
        self.chunks: list[bytes] = []
        self.size = 0

    def run(self) -> None:
        try:
            while True:
                chunk = self.fileobj.read(1 << 16)
                if not chunk:
                    break
                self.chunks.append(chunk)
                self.size += len(chunk)
                if self.limit is not None and self.size > 4 * self.limit:
                    data = b"".join(self.chunks)[-self.limit:]
                    self.chunks, self.size = [data], len(data)
        finally:
            self.fileobj.close()

    def data(self) -> bytes:
        return b"".join(self.chunks)


def audio_filter_args(options: DecodeOptions, rate: int) -> dict[str, Any]:
    """Output arguments for one f32le audio output at `rate` (channels kept; averaged in numpy)."""
    graph = RESAMPLERS[options.resampler]
    if graph is None:
        return {"ar": rate}
    # the rate must be inside the filter: a bare -ar would add a second (swr) resampler
    return {"af": graph.format(rate=rate), "ar": rate}


def to_mono(raw: bytes, channels: int) -> np.ndarray:
    """Interleaved f32le samples → mono by the channel mean (librosa's to_mono and VGGish's reader
    average; ffmpeg's `-ac 1` matrix would scale stereo by 1/sqrt(2))."""
    x = np.frombuffer(raw, np.float32)
    if channels <= 1:
        return x
    usable = len(x) - len(x) % channels
    return x[:usable].reshape(-1, channels).mean(axis=1, dtype=np.float64).astype(np.float32)


def run_ffmpeg(
    build_args: Callable[[list[str]], Sequence[str]], num_pipes: int, path: str, *, stdout_consumer=None
) -> tuple[list[bytes], str]:
    """Run ffmpeg with `num_pipes` extra output pipes besides stdout.

    `build_args(urls)` gets one "pipe:<fd>" URL per extra pipe and returns the command line.
    `stdout_consumer(fileobj)` reads stdout on the calling thread (rawvideo straight into a frame
    buffer); the extra pipes and stderr are drained by threads, so ffmpeg never blocks on a full
    pipe. Returns (bytes per extra pipe, stderr text). Raises DecodeError with the stderr tail when
    ffmpeg fails.
    """
    require_binary(ffmpeg_binary())
    fds = [os.pipe() for _ in range(num_pipes)]
    write_ends = [w for _, w in fds]
    try:
        args = list(build_args([f"pipe:{w}" for w in write_ends]))
        # bufsize=0: unbuffered pipes, so rawvideo is read straight into the frame buffer (no copy)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, bufsize=0,
                                stderr=subprocess.PIPE, close_fds=True, pass_fds=write_ends)
    except BaseException:
        for r, w in fds:
            os.close(r)
            os.close(w)
        raise
    for w in write_ends:  # only the child writes; our copies must go for EOF to arrive
        os.close(w)
    readers = [_PipeReader(os.fdopen(r, "rb")) for r, _ in fds]
    err_reader = _PipeReader(proc.stderr, limit=64 * 1024)
    for t in (*readers, err_reader):
        t.start()
    consumer_error: BaseException | None = None
    try:
        if stdout_consumer is not None:
            stdout_consumer(proc.stdout)
        else:
            proc.stdout.read()
    except BaseException as e:  # noqa: BLE001 — re-raised once the process is reaped
        consumer_error = e
        proc.kill()
    finally:
        proc.stdout.close()
        rc = proc.wait()
        for t in (*readers, err_reader):
            t.join()
    stderr = err_reader.data().decode("utf-8", "replace")
    if consumer_error is not None:
        raise consumer_error
    if rc != 0:
        raise DecodeError(f"ffmpeg failed (exit {rc})", path=path, stderr=stderr)
    return [r.data() for r in readers], stderr
