"""The timeline as a PNG, in the style of the AVVP papers' qualitative examples.

Layout (top to bottom): a title line; a strip of frame thumbnails placed at their times; one row per
class that occurs in the timeline, each with an audio track and a visual track on which the segment
probabilities are drawn as shading (0 = white, 1 = full colour) and the detected events as outlined
boxes labelled with their peak probability; audio-visual events as a green bar between the two tracks;
a time axis in seconds. When no class has an event, the classes with the highest probabilities are
drawn instead (marked "no event") so the picture still shows what the model saw.

The picture has an exact pixel size (`figure_size`), so callers and tests know it in advance:
width = `width` px, height = header + thumbnails + rows·row height + axis. Rendering uses the Agg
backend (no display needed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from avvp.parse.timeline import Timeline


@dataclass(frozen=True)
class FigureStyle:
    width: int = 1200  # px
    dpi: int = 100
    left: int = 190  # px for the class labels
    right: int = 20
    header: int = 46  # title
    thumbs: int = 72  # thumbnail strip (0 when there are no thumbnails)
    row: int = 58  # per class: two tracks + gap
    axis: int = 44  # time axis labels
    fallback_rows: int = 3  # classes drawn when none has an event
    audio_cmap: str = "Blues"
    visual_cmap: str = "Oranges"


def time_tick_step(duration: float) -> float:
    """Seconds between time-axis ticks (the PNG and the HTML page use the same axis)."""
    return 1 if duration <= 12 else 2 if duration <= 30 else 5 if duration <= 80 else 10 * max(1, int(duration // 200))


def rows_to_draw(timeline: Timeline, style: FigureStyle = FigureStyle()) -> tuple[list[int], bool]:
    """(class indices, True when they have events). Falls back to the most probable classes."""
    present = timeline.classes_present()
    if present:
        return present, True
    peak = np.maximum(timeline.audio.max(0), timeline.visual.max(0))
    top = np.argsort(-peak, kind="stable")[: style.fallback_rows]
    return sorted(int(i) for i in top), False


def figure_size(num_rows: int, has_thumbnails: bool, style: FigureStyle = FigureStyle()) -> tuple[int, int]:
    """(width, height) in pixels of the PNG for `num_rows` class rows."""
    height = style.header + (style.thumbs if has_thumbnails else 0) + num_rows * style.row + style.axis
    return style.width, height


def pick_thumbnails(thumbnails: Sequence[tuple[float, np.ndarray]], duration: float, slots: int) -> list[tuple[float, np.ndarray]]:
    """One thumbnail per slot, the slots tiling the duration evenly (the nearest frame to each slot centre)."""
    if not thumbnails or slots <= 0:
        return []
    times = np.asarray([t for t, _ in thumbnails], dtype=np.float64)
    wanted = (np.arange(slots) + 0.5) * duration / slots
    return [thumbnails[int(np.argmin(np.abs(times - t)))] for t in wanted]


def draw_figure(
    timeline: Timeline,
    path: str | Path,
    thumbnails: Sequence[tuple[float, np.ndarray]] = (),
    style: FigureStyle = FigureStyle(),
    title: str | None = None,
) -> Path:
    """Render the timeline to `path` (PNG). `thumbnails`: (time in s, HxWx3 uint8 image) pairs."""

    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    rows, have_events = rows_to_draw(timeline, style)
    width, height = figure_size(len(rows), bool(thumbnails), style)
    fig = Figure(figsize=(width / style.dpi, height / style.dpi), dpi=style.dpi)
    duration = max(timeline.duration, 1e-6)
    plot_w = width - style.left - style.right

    def axes(top_px: float, h_px: float):
        """Axes at pixel rectangle (from the top), spanning the plot width."""
        return fig.add_axes((style.left / width, 1 - (top_px + h_px) / height, plot_w / width, h_px / height))

    meta = timeline.meta
    name = title if title is not None else Path(timeline.video).name or "video"
    subtitle = f"model {meta['model']} (preset {meta.get('preset')})" if meta.get("model") else ""
    fig.text(style.left / width, 1 - 8 / height, name, ha="left", va="top", fontsize=12, weight="bold")
    note = f"{subtitle}   gate: {timeline.config.gate}, threshold {timeline.config.threshold:g}"
    if meta.get("random_weights"):
        note += "   RANDOM backbone weights: no pretrained meaning"
    fig.text(style.left / width, 1 - 27 / height, note, ha="left", va="top", fontsize=8,
             color="crimson" if meta.get("random_weights") else "dimgray")
    legend = (("audio", "tab:blue"), ("visual", "tab:orange"), ("audio-visual event", "tab:green"))
    x_px = width - style.right
    for text, color in reversed(legend):  # right-aligned entries, about 6.5 px per character at 8 pt
        fig.text(x_px / width, 1 - 27 / height, "■ " + text, ha="right", va="top",
                 fontsize=8, color=color)
        x_px -= 6.5 * (len(text) + 2) + 14

    top = style.header
    if thumbnails:
        ax = axes(top + 4, style.thumbs - 10)
        first = thumbnails[0][1]
        thumb_h_px = style.thumbs - 10
        thumb_w_px = thumb_h_px * first.shape[1] / max(first.shape[0], 1)
        slots = max(1, int(plot_w // (thumb_w_px + 2)))
        span = thumb_w_px / plot_w * duration
        slot = duration / slots
        for k, (_, image) in enumerate(pick_thumbnails(thumbnails, duration, slots)):
            # tile the strip evenly: image k sits at the centre of slot k, whatever its exact frame time
            x0 = float(np.clip((k + 0.5) * slot - span / 2, 0, max(duration - span, 0)))
            ax.imshow(image, extent=(x0, x0 + span, 0, 1), aspect="auto", interpolation="bilinear")
        ax.set_xlim(0, duration)
        ax.set_ylim(0, 1)
        ax.axis("off")
        top += style.thumbs

    edges = np.minimum(np.arange(timeline.num_segments + 1) * timeline.config.segment_seconds, duration)
    track_colors = {"audio": "tab:blue", "visual": "tab:orange"}
    cmaps = {"audio": style.audio_cmap, "visual": style.visual_cmap}
    probs = {"audio": timeline.audio, "visual": timeline.visual}
    for r, c in enumerate(rows):
        ax = axes(top + r * style.row + 3, style.row - 8)
        label = timeline.classes[c].replace("_", " ")
        ax.set_ylim(0, 2.3)
        ax.set_xlim(0, duration)
        for track, y0 in (("visual", 0.0), ("audio", 1.3)):
            ax.pcolormesh(edges, [y0, y0 + 1.0], probs[track][:, c][None, :], cmap=cmaps[track], vmin=0.0, vmax=1.0,
                          shading="flat")
            ax.text(-0.005 * duration, y0 + 0.5, track, ha="right", va="center", fontsize=7, color=track_colors[track])
        for e in timeline.events:
            if e.label != timeline.classes[c]:
                continue
            if e.modality == "audio-visual":
                ax.add_patch(Rectangle((e.start, 1.05), e.end - e.start, 0.2, color="tab:green", lw=0))
                continue
            y0 = 1.3 if e.modality == "audio" else 0.0
            ax.add_patch(Rectangle((e.start, y0), e.end - e.start, 1.0, fill=False, lw=1.4,
                                   edgecolor=track_colors[e.modality]))
            ax.text(e.start + 0.02 * duration / 10, y0 + 0.5, f"{e.peak:.2f}", fontsize=6.5, va="center", ha="left")
        ax.set_yticks([])
        ax.set_xticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        fig.text((style.left - 58) / width, 1 - (top + r * style.row + style.row / 2) / height,
                 label + ("" if have_events else "\n(no event)"), ha="right", va="center", fontsize=9)

    # the shared time axis under the last row
    ax = axes(top + len(rows) * style.row, 1)
    ax.set_xlim(0, duration)
    ax.set_yticks([])
    ax.set_xticks(np.arange(0, duration + 1e-9, time_tick_step(duration)))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("time (s)", fontsize=8)
    for spine in ("left", "right", "top"):
        ax.spines[spine].set_visible(False)
    for w in timeline.window_starts[1:]:  # window boundaries of a long video
        ax.axvline(w, color="gray", lw=0.8, ls=":")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=style.dpi, format="png")  # no bbox="tight": the size stays exactly figure_size
    return path
