"""The timeline as one self-contained HTML page (`avvp-parse --html`).

The page holds the video, the timeline drawn as inline SVG (one row per class that occurs, an audio and
a visual track each, probabilities as shading, events as outlined boxes, audio-visual events as a green
bar), an event table, and a playback cursor: a few lines of inline JavaScript move a vertical line over
the timeline as the video plays, highlight the events under it, and seek the video when the timeline is
clicked. Nothing is loaded from anywhere else: CSS, SVG and JS are inline; the video is either a
relative `<video src>` pointing at the file (the page must then stay next to it, as `avvp-parse` writes
it) or, with `embed_video=True` and a file under `max_embed_bytes`, a base64 `data:` URI.

When its script has run, the page sets `data-avvp-ready="1"` on <html> and fills the #avvp-status
element with "ready"; an uncaught script error is written into #avvp-errors. Tests load the page in
headless Chromium and check both.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import mimetypes
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avvp.parse.figure import rows_to_draw, time_tick_step
from avvp.parse.timeline import Timeline

DEFAULT_MAX_EMBED_BYTES = 20 * 1024 * 1024
MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".ogv": "video/ogg", ".avi": "video/x-msvideo"}


@dataclass(frozen=True)
class PageLayout:
    """SVG geometry in user units (the SVG scales to the page width)."""

    width: int = 1000
    left: int = 170
    right: int = 10
    row: int = 50
    track: int = 18
    gap: int = 6  # between the visual and the audio track (the audio-visual bar sits in it)
    axis: int = 26

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    def fitted(self, labels: list[str]) -> "PageLayout":
        """This layout with a left margin wide enough for the longest class label (whole, never cut)."""
        need = LABEL_GAP + math.ceil(max((len(s) for s in labels), default=0) * LABEL_CHAR_WIDTH) + 4
        return dataclasses.replace(self, left=max(self.left, need))


# the class labels (12 px sans-serif, right-aligned LABEL_GAP units left of the plot): an upper bound of
# the average glyph width (0.62 em), so the longest LLP name with " (no event)" still fits
LABEL_CHAR_WIDTH = 7.5
LABEL_GAP = 48


def row_labels(timeline: Timeline) -> list[tuple[int, str]]:
    """(class index, label) of each drawn row, top to bottom."""
    rows, have_events = rows_to_draw(timeline)
    return [(c, timeline.classes[c].replace("_", " ") + ("" if have_events else " (no event)")) for c in rows]


def video_source(video: str | Path, page: str | Path, embed: bool, max_embed_bytes: int = DEFAULT_MAX_EMBED_BYTES) -> tuple[str, str]:
    """(src attribute, note). Embeds small files as data URIs when asked, else a relative URL."""
    video, page = Path(video), Path(page)
    size = video.stat().st_size if video.exists() else 0
    if embed and video.exists() and size <= max_embed_bytes:
        mime = MEDIA_TYPES.get(video.suffix.lower()) or mimetypes.guess_type(video.name)[0] or "video/mp4"
        return f"data:{mime};base64,{base64.b64encode(video.read_bytes()).decode('ascii')}", "embedded"
    rel = os.path.relpath(video.resolve(), page.resolve().parent)
    note = ""
    if embed:
        note = (f"not embedded: {size / 2**20:.1f} MiB is over the {max_embed_bytes / 2**20:.0f} MiB limit"
                if video.exists() else "not embedded: file not found")
    return urllib.parse.quote(Path(rel).as_posix()), note


def _svg(timeline: Timeline, layout: PageLayout) -> tuple[str, int]:
    labels = row_labels(timeline)
    lay = layout.fitted([label for _, label in labels])
    duration = max(timeline.duration, 1e-6)
    height = len(labels) * lay.row + lay.axis

    def x(t: float) -> float:
        return round(lay.left + t / duration * lay.plot_width, 2)

    seg = timeline.config.segment_seconds
    parts: list[str] = []
    for r, (c, label) in enumerate(labels):
        y = r * lay.row
        name = timeline.classes[c]
        parts.append(f'<text class="cls" x="{lay.left - LABEL_GAP}" y="{y + lay.row / 2}">{html.escape(label)}</text>')
        tracks = (("visual", y + 4, timeline.visual), ("audio", y + 4 + lay.track + lay.gap, timeline.audio))
        for track, ty, prob in tracks:
            parts.append(f'<text class="trk {track}" x="{lay.left - 4}" y="{ty + lay.track / 2}">{track}</text>')
            parts.append(f'<rect class="bg" x="{lay.left}" y="{ty}" width="{lay.plot_width}" height="{lay.track}"/>')
            for s in range(timeline.num_segments):
                p = float(prob[s, c])
                if p < 0.01:
                    continue
                t0, t1 = s * seg, min((s + 1) * seg, duration)
                parts.append(f'<rect class="p {track}" x="{x(t0)}" y="{ty}" width="{round(x(t1) - x(t0), 2)}" '
                             f'height="{lay.track}" fill-opacity="{p:.3f}"><title>{html.escape(name)} {track} '
                             f'{t0:g}-{t1:g} s: {p:.2f}</title></rect>')
        for e in timeline.events:
            if e.label != name:
                continue
            if e.modality == "audio-visual":
                ey, eh, cls = y + 4 + lay.track + 1, lay.gap - 2, "ev av"
            else:
                ey = y + 4 + (lay.track + lay.gap if e.modality == "audio" else 0)
                eh, cls = lay.track, f"ev {e.modality}"
            parts.append(f'<rect class="{cls}" data-start="{e.start}" data-end="{e.end}" x="{x(e.start)}" y="{ey}" '
                         f'width="{round(x(e.end) - x(e.start), 2)}" height="{eh}"><title>{html.escape(name)} '
                         f'{e.modality} {e.start:g}-{e.end:g} s, peak {e.peak:.2f}</title></rect>')
    axis_y = len(labels) * lay.row
    parts.append(f'<line class="axis" x1="{lay.left}" x2="{lay.left + lay.plot_width}" y1="{axis_y + 2}" y2="{axis_y + 2}"/>')
    step = time_tick_step(duration)
    for t in np.arange(0, duration + 1e-9, step):
        parts.append(f'<text class="tick" x="{x(float(t))}" y="{axis_y + 18}">{float(t):g}</text>')
    for w in timeline.window_starts[1:]:
        parts.append(f'<line class="win" x1="{x(w)}" x2="{x(w)}" y1="0" y2="{axis_y}"/>')
    parts.append(f'<line id="avvp-cursor" x1="{lay.left}" x2="{lay.left}" y1="0" y2="{axis_y + 4}"/>')
    svg = (f'<svg id="avvp-svg" viewBox="0 0 {lay.width} {height}" xmlns="http://www.w3.org/2000/svg" '
           f'role="img" aria-label="event timeline">' + "".join(parts) + "</svg>")
    return svg, height


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:16px auto;max-width:1040px;color:#222}
h1{font-size:18px;margin:0 0 4px}.note{font-size:13px;color:#666;margin:0 0 10px}.warn{color:#b00020;font-weight:600}
video{width:100%;max-height:420px;background:#000;display:block}
#avvp-svg{width:100%;height:auto;cursor:pointer;margin-top:8px;user-select:none}
.cls{font-size:12px;text-anchor:end;dominant-baseline:middle}
.trk{font-size:9px;text-anchor:end;dominant-baseline:middle}.trk.audio{fill:#1f77b4}.trk.visual{fill:#e07b00}
.bg{fill:#f4f4f4}.p.audio{fill:#1f77b4}.p.visual{fill:#ff7f0e}
.ev{fill:none;stroke-width:1.6}.ev.audio{stroke:#0b3d66}.ev.visual{stroke:#8a4000}.ev.av{fill:#2ca02c;stroke:none}
.ev.active{stroke-width:3.2}.ev.av.active{fill:#145214}
.axis{stroke:#999}.tick{font-size:10px;text-anchor:middle;fill:#555}.win{stroke:#aaa;stroke-dasharray:2 3}
#avvp-cursor{stroke:#d62728;stroke-width:2}
table{border-collapse:collapse;font-size:13px;margin-top:12px}td,th{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}
tr.active td{background:#fff3c4}#avvp-time{font-variant-numeric:tabular-nums}
#avvp-status,#avvp-errors{font-size:11px;color:#999}
"""

# The cursor script. It runs once at the end of <body>; every reference is to elements above it.
JS = """
(function () {
  var errors = document.getElementById('avvp-errors');
  window.addEventListener('error', function (ev) {
    errors.textContent += 'script error: ' + ev.message + '\\n';
  });
  var video = document.getElementById('avvp-video');
  var svg = document.getElementById('avvp-svg');
  var cursor = document.getElementById('avvp-cursor');
  var clock = document.getElementById('avvp-time');
  var X0 = %(x0)s, W = %(w)s, DUR = %(duration)s;
  var marks = Array.prototype.slice.call(document.querySelectorAll('[data-start]'));
  function place(t) {
    t = Math.max(0, Math.min(t, DUR));
    var x = X0 + t / DUR * W;
    cursor.setAttribute('x1', x);
    cursor.setAttribute('x2', x);
    clock.textContent = t.toFixed(2) + ' s';
    marks.forEach(function (m) {
      var on = t >= parseFloat(m.getAttribute('data-start')) && t < parseFloat(m.getAttribute('data-end'));
      m.classList.toggle('active', on);
    });
  }
  function tick() {
    place(video.currentTime);
    if (!video.paused && !video.ended) { window.requestAnimationFrame(tick); }
  }
  video.addEventListener('timeupdate', function () { place(video.currentTime); });
  video.addEventListener('seeked', function () { place(video.currentTime); });
  video.addEventListener('play', function () { window.requestAnimationFrame(tick); });
  svg.addEventListener('click', function (ev) {
    var pt = svg.createSVGPoint();
    pt.x = ev.clientX; pt.y = ev.clientY;
    var p = pt.matrixTransform(svg.getScreenCTM().inverse());
    var t = (p.x - X0) / W * DUR;
    if (t >= 0 && t <= DUR) { video.currentTime = t; place(t); }
  });
  place(0);
  document.documentElement.setAttribute('data-avvp-ready', '1');
  document.getElementById('avvp-status').textContent = 'ready';
})();
"""


def render_html(
    timeline: Timeline,
    page_path: str | Path,
    video_path: str | Path | None = None,
    *,
    embed_video: bool = False,
    max_embed_bytes: int = DEFAULT_MAX_EMBED_BYTES,
    layout: PageLayout = PageLayout(),
) -> str:
    """The page as a string. `page_path` is where it will be written (relative video URLs start there)."""
    video_path = Path(video_path if video_path is not None else timeline.video)
    src, src_note = video_source(video_path, page_path, embed_video, max_embed_bytes)
    layout = layout.fitted([label for _, label in row_labels(timeline)])  # the cursor script uses it too
    svg, _ = _svg(timeline, layout)
    meta = timeline.meta
    title = html.escape(video_path.name)
    notes = [f"gate: {html.escape(timeline.config.gate)}, threshold {timeline.config.threshold:g}",
             f"duration {timeline.duration:.2f} s, {len(timeline.window_starts)} window(s) of {timeline.config.window:g} s"]
    if meta.get("model"):
        notes.insert(0, "model " + html.escape(f"{meta.get('model')} ({meta.get('preset', '')})"))
    if src_note:
        notes.append(html.escape(src_note))
    warn = ""
    if meta.get("random_weights"):
        warn = ('<p class="note warn">Features came from RANDOM backbone weights: this page shows the plumbing, '
                "not meaningful predictions.</p>")
    rows = "".join(
        f'<tr data-start="{e.start}" data-end="{e.end}"><td>{html.escape(e.label)}</td><td>{e.modality}</td>'
        f"<td>{e.start:g}</td><td>{e.end:g}</td><td>{e.peak:.2f}</td></tr>"
        for e in timeline.events
    ) or '<tr><td colspan="5">no event reached the threshold</td></tr>'
    data = json.dumps(timeline.to_dict()).replace("</", "<\\/")  # keep "</script>" out of the JSON block
    script = JS % {"x0": layout.left, "w": layout.plot_width, "duration": repr(max(timeline.duration, 1e-6))}
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - avvp-parse</title>
<style>{CSS}</style>
</head>
<body>
<h1>{title}</h1>
<p class="note">{' &middot; '.join(notes)}</p>
{warn}
<video id="avvp-video" controls preload="metadata" src="{html.escape(src, quote=True)}"></video>
<div>time <span id="avvp-time">0.00 s</span></div>
{svg}
<table><thead><tr><th>class</th><th>modality</th><th>start (s)</th><th>end (s)</th><th>peak</th></tr></thead>
<tbody>{rows}</tbody></table>
<pre id="avvp-errors"></pre>
<div id="avvp-status"></div>
<script type="application/json" id="avvp-timeline">{data}</script>
<script>{script}</script>
</body>
</html>
"""


def write_html(
    timeline: Timeline,
    page_path: str | Path,
    video_path: str | Path | None = None,
    *,
    embed_video: bool = False,
    max_embed_bytes: int = DEFAULT_MAX_EMBED_BYTES,
) -> Path:
    page_path = Path(page_path)
    page_path.parent.mkdir(parents=True, exist_ok=True)
    page_path.write_text(render_html(timeline, page_path, video_path, embed_video=embed_video,
                                     max_embed_bytes=max_embed_bytes), encoding="utf-8")
    return page_path
