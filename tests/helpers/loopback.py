"""A loopback HTTP server (127.0.0.1, a free port) standing in for YouTube in the download tests.

`/<ytid>.mp4` serves the bytes registered for that id, or misbehaves as its case says:

    ok          the file (Content-Type video/mp4; byte ranges honoured), in 64 KiB chunks with
                `chunk_delay` seconds between them
    404 / 451   that HTTP status (removed / unavailable for legal reasons)
    truncated   the first 30% of the file, announced as such (a broken file: the trim fails)
    cut         the full length announced, half sent, then the connection closed (a network failure)
    stall       headers, then silence for `stall_seconds` (a timeout)

Every request is logged as (method, ytid) in `requests`, so a test can see what a run fetched.
"""
from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoopbackVideos:
    files: dict[str, bytes] = field(default_factory=dict)
    cases: dict[str, str] = field(default_factory=dict)
    chunk_delay: float = 0.0
    stall_seconds: float = 5.0
    requests: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        videos = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                ytid = self.path.lstrip("/").split("?")[0].removesuffix(".mp4")
                with videos._lock:
                    videos.requests.append((self.command, ytid))
                case = videos.cases.get(ytid, "ok")
                data = videos.files.get(ytid)
                if case in ("404", "451") or data is None:
                    status = 404 if data is None else int(case)
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if case == "truncated":
                    data = data[: int(len(data) * 0.3)]
                byte_range = self.headers.get("Range", "")
                if case == "ok" and byte_range.startswith("bytes="):
                    # one range, as ffmpeg asks when it seeks (the range trim reads only the window)
                    first, _, last = byte_range[6:].split(",")[0].partition("-")
                    lo, hi = int(first or 0), min(int(last) if last else len(data) - 1, len(data) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {lo}-{hi}/{len(data)}")
                    data = data[lo:hi + 1]
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                try:
                    if case == "stall":
                        time.sleep(videos.stall_seconds)
                        return
                    if case == "cut":
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    step = 64 * 1024
                    for i in range(0, len(data), step):
                        self.wfile.write(data[i:i + step])
                        if videos.chunk_delay:
                            time.sleep(videos.chunk_delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class QuietServer(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # clients that hang up (timeouts, killed downloads) are part of the tests

        self.server = QuietServer(("127.0.0.1", self.port), Handler)  # port 0: a free one
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{ytid}}.mp4"

    def fetched(self) -> set[str]:
        """Ids that got a GET."""
        with self._lock:
            return {y for m, y in self.requests if m == "GET"}

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
