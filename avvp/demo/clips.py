"""Planted-event demo clips: 10 s videos whose sounds and pictures are known to the second.

Every demo class is a stand-in with one sound and one picture (documented in docs/parse.md and in
`DEMO_CLASSES`); it borrows an LLP class name so that the model keeps its 25 outputs and the parse
timeline reads like one of a real video. Neither the sounds nor the pictures resemble the real class:
they are signals a random-weight backbone still tells apart (distinct tone frequencies / noise colours /
beep rates in the log-mel range of VGGish; large boxes of saturated, well separated colours in their own
part of the frame for CLIP).

An event is (class, modality, first second, end second) with modality "audio" (heard only), "visual"
(seen only) or "audio-visual" (heard and seen, over times that may differ, like the issue's tone heard
2-5 s while the shape is seen 4-9 s). A clip holds one to three events of different classes; they may
overlap in time. Events start and end on whole seconds, so the segment truth (segment t = [t, t+1) s,
as LLP) is exact: `gt_audio[t, c] = 1` iff class c is heard during [t, t+1).

The clip is synthesised with numpy (samples and RGB frames) and encoded by one ffmpeg process
(libx264 + AAC), so `make_clip` is fast (~0.1-0.2 s) and the truth is what was written.
"""
from __future__ import annotations

import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from avvp.data.classes import CLASS_INDEX, NUM_CLASSES, NUM_SEGMENTS

SECONDS = NUM_SEGMENTS  # one LLP window: 10 one-second segments
AUDIO_RATE = 16000
FPS = 8  # the extraction decodes 8 fps; encoding 8 fps keeps every frame a planted frame
WIDTH, HEIGHT = 160, 120
BACKGROUND = (24, 24, 24)
NOISE_FLOOR = 0.003  # quiet background hiss, so silence is not digital zero
EVENT_LEVEL = 0.3  # peak amplitude of one sound


@dataclass(frozen=True)
class DemoClass:
    """One demo class: its LLP name, its sound, and its picture (a box of `color` whose left edge moves
    from `x0` to `x1` over the event, at vertical offset `y`)."""

    llp_name: str
    sound: str  # key of SOUNDS
    sound_what: str
    color: tuple[int, int, int]
    x0: int
    x1: int
    y: int

    @property
    def index(self) -> int:
        return CLASS_INDEX[self.llp_name]


# a box covers ~19% of the frame: large enough for random patch features. Boxes of different classes
# never sit at the same height, and two of the same height never at the same x, so none hides another
BOX_W, BOX_H = 64, 56

DEMO_CLASSES: tuple[DemoClass, ...] = (
    DemoClass("Telephone_bell_ringing", "beep_2k", "2 kHz tone beeping at 4 Hz", (230, 30, 30), 0, 40, 0),
    DemoClass("Cello", "tone_220", "220 Hz tone with harmonics", (30, 200, 40), 96, 56, 0),
    DemoClass("Vacuum_cleaner", "white_noise", "white noise", (40, 60, 240), 0, 40, 64),
    DemoClass("Helicopter", "brown_noise", "low rumble (brown noise)", (240, 220, 30), 96, 56, 64),
    DemoClass("Chicken_rooster", "chirp", "rising 600-3000 Hz chirp, twice a second", (220, 40, 220), 48, 48, 44),
    DemoClass("Violin_fiddle", "tone_880", "880 Hz tone with vibrato", (40, 220, 220), 20, 76, 16),
)


@dataclass(frozen=True)
class PlantedEvent:
    demo_class: int  # index into DEMO_CLASSES
    modality: str  # "audio" | "visual" | "audio-visual"
    audio: tuple[int, int] | None  # [start, end) seconds heard, None when not heard
    visual: tuple[int, int] | None  # [start, end) seconds seen

    def describe(self) -> str:
        c = DEMO_CLASSES[self.demo_class]
        parts = []
        if self.audio:
            parts.append(f"heard {self.audio[0]}-{self.audio[1]} s ({c.sound_what})")
        if self.visual:
            parts.append(f"seen {self.visual[0]}-{self.visual[1]} s (rgb{c.color} box)")
        return f"{c.llp_name}: " + ", ".join(parts)


@dataclass(frozen=True)
class DemoClip:
    name: str
    events: tuple[PlantedEvent, ...]

    def truth(self) -> tuple[np.ndarray, np.ndarray]:
        """Segment truth (10, 25) uint8 for audio and visual, in LLP class order."""
        gt_a = np.zeros((NUM_SEGMENTS, NUM_CLASSES), np.uint8)
        gt_v = np.zeros((NUM_SEGMENTS, NUM_CLASSES), np.uint8)
        for e in self.events:
            k = DEMO_CLASSES[e.demo_class].index
            if e.audio:
                gt_a[e.audio[0] : e.audio[1], k] = 1
            if e.visual:
                gt_v[e.visual[0] : e.visual[1], k] = 1
        return gt_a, gt_v

    def weak(self) -> np.ndarray:
        gt_a, gt_v = self.truth()
        return (gt_a.any(0) | gt_v.any(0)).astype(np.uint8)


MODALITIES = ("audio", "visual", "audio-visual")


def _span(rng: np.random.Generator, min_len: int = 2, max_len: int = 6) -> tuple[int, int]:
    length = int(rng.integers(min_len, max_len + 1))
    start = int(rng.integers(0, SECONDS - length + 1))
    return start, start + length


def plan_clips(num: int, seed: int = 0, prefix: str = "demo") -> list[DemoClip]:
    """`num` clips with 1-3 events each (classes distinct within a clip; modalities drawn uniformly;
    an audio-visual event's heard and seen spans drawn independently, so they overlap or not)."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(num):
        n_events = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
        classes = rng.choice(len(DEMO_CLASSES), size=n_events, replace=False)
        events = []
        for c in classes:
            modality = MODALITIES[int(rng.integers(len(MODALITIES)))]
            audio = _span(rng) if modality != "visual" else None
            visual = _span(rng) if modality != "audio" else None
            events.append(PlantedEvent(int(c), modality, audio, visual))
        clips.append(DemoClip(f"{prefix}_{i:04d}", tuple(events)))
    return clips


def _sound(kind: str, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "beep_2k":
        return np.sin(2 * np.pi * 2000 * t) * (np.floor(t * 8) % 2 == 0)
    if kind == "tone_220":
        return sum(np.sin(2 * np.pi * 220 * h * t) / h for h in (1, 2, 3, 4)) / 2.0
    if kind == "white_noise":
        return rng.uniform(-1, 1, t.shape)
    if kind == "brown_noise":
        x = np.cumsum(rng.standard_normal(t.shape))
        x -= np.convolve(x, np.ones(801) / 801, mode="same")  # drop the DC drift, keep the rumble
        return x / (np.abs(x).max() + 1e-9)
    if kind == "chirp":
        phase = t % 0.5
        return np.sin(2 * np.pi * (600 * phase + 2400 * phase ** 2)) * (phase < 0.4)
    if kind == "tone_880":
        return np.sin(2 * np.pi * 880 * t + 3.0 * np.sin(2 * np.pi * 6 * t))
    raise KeyError(kind)


def render_audio(clip: DemoClip, seed: int = 0) -> np.ndarray:
    """Mono float samples in [-1, 1] at AUDIO_RATE: the noise floor plus each heard event in its span."""
    rng = np.random.default_rng(seed)
    n = SECONDS * AUDIO_RATE
    t = np.arange(n) / AUDIO_RATE
    out = NOISE_FLOOR * rng.standard_normal(n)
    for e in clip.events:
        if e.audio:
            a, b = e.audio[0] * AUDIO_RATE, e.audio[1] * AUDIO_RATE
            s = _sound(DEMO_CLASSES[e.demo_class].sound, t[a:b], rng)
            ramp = np.minimum(1.0, np.minimum(np.arange(b - a), np.arange(b - a)[::-1]) / 80.0)  # 5 ms fades, no clicks
            out[a:b] += EVENT_LEVEL * s * ramp
    return np.clip(out, -1.0, 1.0)


def box_position(c: DemoClass, span: tuple[int, int], t: float) -> tuple[int, int]:
    frac = (t - span[0]) / max(1e-9, span[1] - span[0])
    return int(round(c.x0 + (c.x1 - c.x0) * frac)), c.y


def render_frames(clip: DemoClip) -> np.ndarray:
    """(SECONDS*FPS, HEIGHT, WIDTH, 3) uint8: the background plus each seen event's box in its span
    (frame f shows time f/FPS; later events are drawn over earlier ones)."""
    frames = np.empty((SECONDS * FPS, HEIGHT, WIDTH, 3), np.uint8)
    frames[:] = BACKGROUND
    for f in range(len(frames)):
        t = f / FPS
        for e in clip.events:
            if e.visual and e.visual[0] <= t < e.visual[1]:
                c = DEMO_CLASSES[e.demo_class]
                x, y = box_position(c, e.visual, t)
                frames[f, y : y + BOX_H, x : x + BOX_W] = c.color
    return frames


def make_clip(clip: DemoClip, out_dir: str | Path, seed: int = 0, ffmpeg: str = "ffmpeg") -> Path:
    """Encode the clip to `out_dir/<name>.mp4` (H.264 at FPS, AAC mono at AUDIO_RATE)."""
    out = Path(out_dir) / f"{clip.name}.mp4"
    samples = (render_audio(clip, seed) * 32767).astype("<i2")
    frames = render_frames(clip)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(AUDIO_RATE)
            w.writeframes(samples.tobytes())
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
               "-i", str(wav), "-map", "0:0", "-map", "1:0", "-c:v", "libx264", "-preset", "ultrafast",
               "-qp", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
               "-t", str(SECONDS), str(out)]
        proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed for {clip.name}: {proc.stderr.decode(errors='replace')[-800:]}")
    return out


def make_clips(clips: Sequence[DemoClip], out_dir: str | Path, seed: int = 0, workers: int = 2) -> list[Path]:
    """Encode many clips, `workers` ffmpeg processes at a time (each clip's noise seeded by seed + i)."""
    from concurrent.futures import ThreadPoolExecutor

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(lambda ic: make_clip(ic[1], out_dir, seed + ic[0]), enumerate(clips)))
