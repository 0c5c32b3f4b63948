"""avvp-parse: prediction arrays → events (merging, seconds, gating, padding, windows), the PNG, the HTML page
in headless Chromium, and the whole command on a 25 s video with a checkpoint trained here."""
from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avvp.parse.figure import FigureStyle, draw_figure, figure_size
from avvp.parse.html import render_html, write_html
from avvp.parse.timeline import Timeline, TimelineConfig, WindowPrediction, build_timeline

from tests.helpers.media import make_clip

CLASSES = ["Speech", "Dog", "Car"]
CHROMIUM = Path("/usr/bin/chromium")


def _windows() -> list[WindowPrediction]:
    """Two windows of a 15.5 s video (second window padded after 5.5 s), 3 classes."""
    a = np.zeros((2, 10, 3))
    v = np.zeros((2, 10, 3))
    # Speech audio: on at segments 1-3 (0.5 counts: the threshold is >=), peak 0.7
    a[0, :, 0] = [0.2, 0.6, 0.7, 0.5, 0.49, 0, 0, 0, 0, 0]
    # Speech visual: on at 2-5 → audio-visual = segments 2-3, peak max(min(a, v)) = min(0.7, 0.8) = 0.7
    v[0, :, 0] = [0, 0, 0.8, 0.9, 0.6, 0.55, 0, 0, 0, 0]
    # Dog audio: 8-9 of window 0 and 0-1 of window 1 → ONE event 8-12 s across the boundary, peak 0.95
    a[0, 8:, 1] = [0.9, 0.6]
    a[1, :2, 1] = [0.95, 0.7]
    # Dog audio again at 14-15 of the timeline (window 1 segments 4-5): the last one ends at the duration
    a[1, 4:6, 1] = [0.8, 0.85]
    # Speech audio in the padded part of window 1 (segment 7 = 17 s > 15.5 s): must vanish
    a[1, 7, 0] = 0.99
    # Car visual is high, but Car's video-level probability is 0.4: gated off under the standard protocol
    v[0, 3:6, 2] = 0.9
    video = np.array([[0.9, 0.8, 0.4], [0.9, 0.8, 0.4]])
    return [WindowPrediction(w * 10.0, a[w], v[w], video[w], audio_video=np.array([0.9, 0.2, 0.1]),
                             visual_video=np.array([0.9, 0.9, 0.9])) for w in range(2)]


def _events(t: Timeline) -> list[tuple]:
    return [(e.label, e.modality, e.start, e.end, round(e.peak, 6)) for e in t.events]


def test_timeline_merges_consecutive_segments_into_events_in_seconds():
    t = build_timeline(_windows(), CLASSES, duration=15.5, video="x.mp4")
    assert t.num_segments == 16  # 15.5 s → segments 0..15; the padded 16..19 are dropped
    assert t.window_starts == [0.0, 10.0]
    assert _events(t) == [
        ("Speech", "audio", 1.0, 4.0, 0.7),
        ("Speech", "visual", 2.0, 6.0, 0.9),
        ("Speech", "audio-visual", 2.0, 4.0, 0.7),
        ("Dog", "audio", 8.0, 12.0, 0.95),
        ("Dog", "audio", 14.0, 15.5, 0.85),
    ]
    # segment indices on the concatenated axis
    dog = [e for e in t.events if e.label == "Dog"]
    assert [(e.first_segment, e.last_segment) for e in dog] == [(8, 11), (14, 15)]


def test_gating_options():
    windows = _windows()
    ungated = build_timeline(windows, CLASSES, 15.5, TimelineConfig(gate="none"))
    assert ("Car", "visual", 3.0, 6.0, 0.9) in _events(ungated)  # the video gate is what removed it
    # MA's modality gates: audio by a_prob (Dog 0.2 → off), visual by v_prob (Car 0.9 → on)
    modality = build_timeline(windows, CLASSES, 15.5, TimelineConfig(gate="modality"))
    assert not [e for e in modality.events if e.label == "Dog"]
    assert ("Car", "visual", 3.0, 6.0, 0.9) in _events(modality)
    # a stricter threshold: Speech audio keeps only 0.6, 0.7 (segments 1-2)
    strict = build_timeline(windows, CLASSES, 15.5, TimelineConfig(threshold=0.6))
    assert ("Speech", "audio", 1.0, 3.0, 0.7) in _events(strict)
    with pytest.raises(ValueError, match="unknown gate"):
        TimelineConfig(gate="sometimes")
    with pytest.raises(ValueError, match="must start at 0"):
        build_timeline([windows[1]], CLASSES, 5.0)


def test_json_round_trip(tmp_path):
    t = build_timeline(_windows(), CLASSES, 15.5, video="x.mp4", meta={"model": "han"})
    path = t.write_json(tmp_path / "x.timeline.json")
    d = json.loads(path.read_text())
    assert d["format"] == "avvp-timeline" and d["duration"] == 15.5 and d["gate"] == "global"
    assert d["events"][3] == {"label": "Dog", "modality": "audio", "start": 8.0, "end": 12.0, "peak": 0.95,
                              "segments": [8, 11]}
    assert np.asarray(d["probabilities"]["audio"]).shape == (16, 3)
    assert [w["start"] for w in d["windows"]] == [0.0, 10.0] and d["windows"][1]["end"] == 15.5
    back = Timeline.from_dict(d)
    assert back.events == t.events and back.meta == {"model": "han"}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def test_figure_png_has_the_planned_size(tmp_path):
    t = build_timeline(_windows(), CLASSES, 15.5, video="x.mp4", meta={"random_weights": True})
    thumbs = [(s + 0.5, np.full((27, 36, 3), 40 * s % 255, np.uint8)) for s in range(15)]
    png = draw_figure(t, tmp_path / "x.png", thumbs)
    assert png.stat().st_size > 5000
    # two classes occur (Speech, Dog): header 46 + thumbnails 72 + 2 rows x 58 + axis 44 = 278 px high
    assert _png_size(png) == (1200, 278) == figure_size(2, True)
    # without events the three most probable classes are drawn, without thumbnails no strip
    quiet = build_timeline(_windows(), CLASSES, 15.5, TimelineConfig(threshold=1.0))
    assert not quiet.events
    assert _png_size(draw_figure(quiet, tmp_path / "q.png", style=FigureStyle(width=800))) == (800, 46 + 3 * 58 + 44)


def _chromium_dom(page: Path, tmp_path: Path) -> tuple[str, str]:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
           "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install -y chromium); "
                                                  "the HTML page cannot be checked in a browser")
def test_html_page_runs_in_headless_chromium_without_errors(tmp_path):
    video = make_clip(tmp_path / "clip.mp4", seconds=2, size=(64, 48))
    t = build_timeline(_windows(), CLASSES, 15.5, video=str(video), meta={"random_weights": True})
    page = write_html(t, tmp_path / "page" / "clip.html", video)
    text = page.read_text()
    assert 'src="../clip.mp4"' in text  # relative to the page
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
    dom, stderr = _chromium_dom(page, tmp_path)
    assert 'data-avvp-ready="1"' in dom and '<div id="avvp-status">ready</div>' in dom
    assert '<pre id="avvp-errors"></pre>' in dom
    assert _console_errors(stderr) == []
    assert dom.count('class="ev audio"') == 3 and dom.count('class="ev av"') == 1

    # negative control: the same checks catch a script error
    broken = tmp_path / "page" / "broken.html"
    broken.write_text(text.replace("place(0);", "place(0); undefinedFunction();"))
    dom, stderr = _chromium_dom(broken, tmp_path)
    assert 'data-avvp-ready="1"' not in dom and "undefinedFunction" in dom
    assert _console_errors(stderr)


def test_html_embeds_small_videos_only(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00" * 1000)
    t = build_timeline(_windows(), CLASSES, 15.5, video=str(video))
    embedded = render_html(t, tmp_path / "p.html", video, embed_video=True)
    assert 'src="data:video/mp4;base64,AAAA' in embedded
    too_big = render_html(t, tmp_path / "p.html", video, embed_video=True, max_embed_bytes=999)
    assert 'src="v.mp4"' in too_big and "over the" in too_big


# ----------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    """Train a tiny HAN (vggish audio, CLIP ViT-B-32 visual, no motion) on a synthetic store for 1 epoch,
    then run `avvp-parse` on a 25 s clip and on a broken file."""
    from avvp.cli.parse import main
    from avvp.data.synthetic import SyntheticConfig, generate_synthetic
    from avvp.extract.backbones import feature_specs
    from avvp.train import preset, train

    root = tmp_path_factory.mktemp("parse")
    store = root / "syn.h5"
    syn = SyntheticConfig(num_train=16, num_val=8, num_test=8, features=("vggish", "clip"), dims=(("clip", 512),))
    generate_synthetic(store, syn, feature_specs(syn.features))
    cfg = preset("han")
    cfg.data.store, cfg.data.audio, cfg.data.visual, cfg.data.motion = str(store), "vggish", "clip", None
    cfg.model.options = {"hidden": 32, "ff": 64}
    cfg.optim.epochs, cfg.train.out, cfg.train.progress = 1, str(root / "run"), False
    train(cfg)
    video = make_clip(root / "long.mp4", seconds=25, size=(96, 72), fps=10)
    bad = root / "broken.mp4"
    bad.write_text("not a video")
    out = root / "out"
    rc = main([str(video), str(bad), "--checkpoint", str(root / "run" / "best.pt"), "--out", str(out), "--html",
               "--weights", "random", "--backbone-opt", "clip.model=ViT-B-32", "--device", "cpu",
               # trained on synthetic features, which no backbone makes: parsing them is a stated choice
               "--accept-feature-mismatch"])
    return {"rc": rc, "out": out, "video": video, "bad": bad}


def test_parse_long_video_covers_the_whole_duration(parsed):
    assert parsed["rc"] == 3  # the broken file failed, the long video was parsed anyway
    d = json.loads((parsed["out"] / "long.timeline.json").read_text())
    assert abs(d["duration"] - 25.0) < 0.05
    assert [w["start"] for w in d["windows"]] == [0.0, 10.0, 20.0]
    assert len(d["probabilities"]["audio"]) == 25 and len(d["probabilities"]["visual"]) == 25
    assert d["meta"]["random_weights"] is True and d["meta"]["features"]["visual"] == "clip"
    assert d["meta"]["backbones"] == ["vggish", "clip"]
    # the accepted differences, the profile and the training provenance are in the timeline
    accepted = d["meta"]["feature_mismatch_accepted"]
    assert any("weights random, trained on pretrained (synthetic)" in a for a in accepted)
    assert d["meta"]["profile"] == "reference" and d["meta"]["precision"] == "fp32"
    assert {p["weights"] for p in d["meta"]["provenance"] if p["role"] != "text"} == {"synthetic"}
    assert _png_size(parsed["out"] / "long.png")[0] == 1200
    assert (parsed["out"] / "long.html").stat().st_size > 2000
    assert not list(parsed["out"].glob("broken*"))


def test_parse_windows_use_the_extraction_code_path(parsed):
    """A later window's features equal what avvp-extract's API gives for the window at 20 s (vggish only,
    which is cheap; the parser's other backbones go through the same call)."""
    from avvp.pipeline import extract
    from avvp.parse.run import Parser, _features_for_window
    from avvp.pipeline.core import ExtractionConfig, load_backbones

    ref = extract(str(parsed["video"]), ["vggish"], weights="random", start=20.0, device="cpu")
    extraction = ExtractionConfig(backbones=("vggish",), weights="random", device="cpu")
    parser = Parser(model=None, checkpoint=None, features={"audio": "vggish"}, classes=[], extraction=extraction,
                    backbones=load_backbones(extraction))
    arrays, decoded = _features_for_window(parser, str(parsed["video"]), 20.0)
    assert decoded.window_start == 20.0 and decoded.padded_seconds == pytest.approx(5.0, abs=0.05)
    np.testing.assert_array_equal(arrays["features/vggish"], ref["features/vggish"])
    first, _ = _features_for_window(parser, str(parsed["video"]), 0.0)
    assert not np.array_equal(first["features/vggish"], arrays["features/vggish"])  # the offset matters:
    # window 0 is the file's first 10 s, what extraction at start=0 computes
    first_ref = extract(str(parsed["video"]), ["vggish"], weights="random", start=0.0, device="cpu")
    np.testing.assert_array_equal(first["features/vggish"], first_ref["features/vggish"])
    # parse_video's path: one probe, consecutive windows; its third window is the same window at 20 s
    from avvp.pipeline.core import decode_windows
    from avvp.pipeline.jobs import VideoJob

    windows = list(decode_windows(VideoJob(id="v", path=str(parsed["video"])), extraction))
    assert [w.window_start for w in windows] == [0.0, 10.0, 20.0]
    np.testing.assert_array_equal(windows[2].audio_16k, decoded.audio_16k)


MEASURE_LABELS = """<script>
window.addEventListener('load', function () {
  var xs = Array.prototype.map.call(document.querySelectorAll('#avvp-svg text.cls'), function (t) { return t.getBBox().x; });
  document.body.setAttribute('data-labels', xs.length);
  document.body.setAttribute('data-min-label-x', Math.min.apply(null, xs).toFixed(1));
});
</script></body>"""


def _min_label_x(page: Path, tmp_path: Path) -> tuple[int, float]:
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text().replace("</body>", MEASURE_LABELS))
    dom, _ = _chromium_dom(probe, tmp_path)
    import re

    n = int(re.search(r'data-labels="(\d+)"', dom).group(1))
    return n, float(re.search(r'data-min-label-x="(-?[\d.]+)"', dom).group(1))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: the page cannot be measured")
def test_longest_class_label_is_shown_whole_in_the_browser(tmp_path):
    from avvp.data.classes import LLP_CLASSES
    from avvp.parse.html import PageLayout

    longest = max(LLP_CLASSES, key=len)
    classes = [longest, "Baby_cry_infant_crying", "Dog"]
    quiet = [WindowPrediction(0.0, np.full((10, 3), 0.1), np.full((10, 3), 0.1), np.array([0.4, 0.3, 0.2]))]
    t = build_timeline(quiet, classes, 10.0, TimelineConfig(threshold=1.0))  # no event: "(no event)" labels
    assert not t.events
    page = tmp_path / "quiet.html"
    page.write_text(render_html(t, page, Path("clip.mp4")))
    n, min_x = _min_label_x(page, tmp_path)
    assert n == 3 and min_x >= 0, f"a class label starts at x={min_x}: cut off on the left"
    # negative control: the old fixed margin cuts the same label off
    narrow = tmp_path / "narrow.html"
    narrow.write_text(render_html(t, narrow, Path("clip.mp4")).replace(
        f'x="{PageLayout().fitted([longest.replace("_", " ") + " (no event)"]).left - 48}"', 'x="122"'))
    assert _min_label_x(narrow, tmp_path)[1] < 0


# ----------------------------------------------------------------------------------- backbone options
def test_backbone_opt_parses_rejects_unknown_and_the_alias_gives_the_same_config(capsys):
    from avvp.cli.parse import build_parser, config_from_args

    parser = build_parser()
    new = config_from_args(parser.parse_args(["v.mp4", "--checkpoint", "c.pt", "--backbone-opt", "clip.model=ViT-B-32",
                                              "--backbone-opt", "clip.quick_gelu=false"]))
    assert new.backbone_options == (("clip", (("model", "ViT-B-32"), ("quick_gelu", False))),)
    assert "deprecated" not in capsys.readouterr().err
    old = config_from_args(parser.parse_args(["v.mp4", "--checkpoint", "c.pt", "--clip-model", "ViT-B-32",
                                              "--backbone-opt", "clip.quick_gelu=false"]))
    assert old == new
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--clip-model is deprecated" in err and "--backbone-opt clip.model=ViT-B-32" in err
    for bad, listed in (("nosuch.model=x", "known: clap, clip, r2plus1d, resnet152, vggish"),
                        ("clip.modle=x", "known: antialias, batch_frames, checkpoint, model, pretrained, quick_gelu, random_seed"),
                        ("clip", "BACKBONE.OPTION=VALUE")):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["v.mp4", "--checkpoint", "c.pt", "--backbone-opt", bad])
        assert exit_info.value.code == 2 and listed in capsys.readouterr().err


def test_producers_and_recorded_options_come_from_the_declarations(tmp_path):
    """clap_tokens is written by the clap backbone; CLIP's recorded model/tag/quick_gelu and VGGish's
    postprocess/final_relu (each backbone's `inherited_options`, plus the seed of random weights) are the
    provenance options a checkpoint carries into avvp-parse; other attributes are not."""
    from avvp.data.store import Store, StoreWriter, VideoRecord
    from avvp.parse.run import needed_backbones
    from avvp.train.checkpoint import provenance_from_store

    features = {"audio": "clap_tokens", "visual": "clip", "motion": "r2plus1d"}
    assert needed_backbones(features) == ("clap", "clip", "r2plus1d")
    with pytest.raises(KeyError, match="no backbone declares 'features/nosuch'"):
        needed_backbones({"audio": "nosuch"})
    store = tmp_path / "s.h5"
    with StoreWriter(store, classes=CLASSES) as w:
        clip = {"backbone": "clip", "weights": "random", "random_weights": True, "model": "ViT-B-32",
                "pretrained": "openai", "quick_gelu": True, "fps": 1, "random_seed": 3, "profile": "clean"}
        vggish = {"backbone": "vggish", "weights": "random", "random_weights": True, "postprocess": np.bool_(False),
                  "final_relu": np.bool_(False), "sample_rate": 16000, "random_seed": 0}
        w.add_video(VideoRecord("v0", source="t", split="train", duration=10.0),
                    {"features/clip": np.zeros((10, 512), np.float32), "features/vggish": np.zeros((10, 128), np.float32)},
                    {"features/clip": clip, "features/vggish": vggish})
    with Store(store) as s:
        audio, visual = provenance_from_store(s, {"audio": "vggish", "visual": "clip"})
    assert dict(visual.options) == {"model": "ViT-B-32", "pretrained": "openai", "quick_gelu": True, "random_seed": 3}
    assert visual.profile == "clean" and visual.random_weights and visual.backbone == "clip"
    # the values come back as plain Python bools
    assert dict(audio.options) == {"postprocess": False, "final_relu": False, "random_seed": 0}
    assert all(type(v) is bool for k, v in audio.options if k != "random_seed")
