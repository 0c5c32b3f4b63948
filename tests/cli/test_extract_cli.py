"""avvp-extract end to end on awkward inputs (random weights, tiny clips made by ffmpeg), and the
extract() API being the same code path as the CLI."""
from __future__ import annotations


import numpy as np
import pytest

from tests.helpers.media import make_clip, make_truncated

from avvp.cli.extract import main  # noqa: E402
from avvp.data.store import Store  # noqa: E402
from avvp.pipeline import ExtractionError, extract  # noqa: E402

# the clean profile pads short clips to a 10 s window (the reference profile, like the official AVVP
# scripts, rejects clips without ten 0.96 s examples: tests/extract/test_profiles.py)
ARGS = ["--backbone", "vggish", "--weights", "random", "--executor", "local", "--no-progress", "--profile", "clean"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    make_clip(root / "plain.mp4", seconds=10)
    make_clip(root / "sub1" / "same.mp4", seconds=10, audio_pattern="sine")
    make_clip(root / "sub2" / "same.mp4", seconds=10, audio_pattern="noise")
    make_clip(root / "noaudio.mp4", seconds=10, audio=False)
    make_clip(root / "short.mp4", seconds=0.5)
    make_clip(root / "long.mkv", seconds=25)
    make_clip(root / "vfr.mp4", seconds=10, vfr=True)
    make_clip(root / "stereo8k.mov", seconds=10, sample_rate=8000, channels=2)
    make_clip(root / "vidéo 音.webm", seconds=3)
    make_clip(root / "audioonly.mp4", seconds=5, video=False, container="m4a")  # no video track
    (root / "zero.mp4").write_bytes(b"")
    make_truncated(root / "plain.mp4", root / "truncated.mp4", keep_fraction=0.02)
    return root


@pytest.fixture(scope="module")
def extracted(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "data.h5"
    rc = main(["--videos", str(folder), "--out", str(out), *ARGS])
    return out, rc


def test_every_input_is_a_row_or_a_failure(extracted):
    out, rc = extracted
    assert rc == 3  # some videos failed: documented exit code
    with Store(out) as s:
        ids = set(s.ids)
        failures = {f.id: f for f in s.failures()}
    assert {"plain", "sub1/same", "sub2/same", "noaudio", "short", "long", "vfr", "stereo8k", "vidéo 音"} <= ids
    assert failures["zero"].stage == "decode" and "empty" in failures["zero"].message
    assert failures["audioonly"].stage == "decode" and "no video stream" in failures["audioonly"].message
    assert ("truncated" in ids) != ("truncated" in failures)  # decoded what exists, or a failure row: never both
    assert not ids & set(failures)


def test_rows_hold_what_the_media_had(folder, extracted):
    out, _ = extracted
    with Store(out) as s:
        rows = {v.id: v for v in s.videos()}
        vggish = dict(zip(s.ids, s.read("features/vggish")))
        assert s.attrs("features/vggish")["random_weights"]
    assert not rows["noaudio"].has_audio and not vggish["noaudio"].any()  # zeros, not a crash
    assert rows["plain"].has_audio and vggish["plain"].any()
    assert rows["short"].duration == pytest.approx(0.5, abs=0.05)  # padded, and the padding recorded
    assert rows["long"].duration == pytest.approx(25.0, abs=0.05)  # the source duration; features: first window
    assert vggish["plain"].shape == (10, 128)
    # equal stems in two folders are two videos with different audio: each row holds its own file's features
    assert not np.array_equal(vggish["sub1/same"], vggish["sub2/same"])
    for stem in ("sub1", "sub2"):
        own = extract(str(folder / stem / "same.mp4"), ["vggish"], weights="random", profile="clean")["features/vggish"]
        np.testing.assert_allclose(vggish[f"{stem}/same"], own, rtol=1e-5, atol=1e-7)
    assert rows["sub1/same"].source.endswith("sub1/same.mp4")


def test_rerun_adds_nothing(folder, extracted, capsys):
    out, _ = extracted
    with Store(out) as s:
        before = (list(s.ids), s.read("features/vggish"))
    main(["--videos", str(folder), "--out", str(out), *ARGS])
    assert "0 done" in capsys.readouterr().err
    with Store(out) as s:
        assert list(s.ids) == before[0]
        np.testing.assert_array_equal(s.read("features/vggish"), before[1])


def test_python_api_is_the_cli_code_path(folder, extracted):
    out, _ = extracted
    arrays = extract(str(folder / "stereo8k.mov"), ["vggish"], weights="random", profile="clean")
    with Store(out) as s:
        # the CLI ran batches of 4 videos, the API one video: BLAS reductions may differ in the last bits
        np.testing.assert_allclose(arrays["features/vggish"], s.read("features/vggish", ["stereo8k"])[0], rtol=1e-5, atol=1e-7)
    assert bool(arrays["videos/has_audio"])
    with pytest.raises(ExtractionError, match="decode"):
        extract(str(folder / "zero.mp4"), ["vggish"], weights="random", profile="clean")


def test_extract_api_lives_in_pipeline_with_a_pointer_from_extract(folder):
    """extract() runs the executor core, so it is avvp.pipeline's; the old name says where it went."""
    import avvp.extract
    from avvp.extract import network_inputs

    for name in ("extract", "dump_network_inputs"):
        with pytest.raises(ImportError, match=f"use avvp.pipeline.{name}"):
            getattr(avvp.extract, name)
    with pytest.raises(ImportError, match="use avvp.pipeline.extract"):
        exec("from avvp.extract import extract", {})
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        avvp.extract.nothing  # noqa: B018
    # one error type for both: network_inputs stays in avvp.extract and fails the same way on bad media
    assert avvp.extract.ExtractionError is ExtractionError
    with pytest.raises(ExtractionError, match="zero.mp4: decode"):
        network_inputs(folder / "zero.mp4", "vggish")
    with pytest.raises(ValueError, match="reference profile needs the ffmpeg decoder"):
        network_inputs(folder / "stereo8k.mov", "vggish", decoder="decord")
    with pytest.raises(ValueError, match="profile must be"):
        network_inputs(folder / "stereo8k.mov", "vggish", profile="exact")


def test_llp_csv_mode(tmp_path):
    from avvp.data import llp

    train = llp.split_ids("train")[:2]
    (tmp_path / "videos").mkdir()
    make_clip(tmp_path / "videos" / f"{llp.ytid(train[0])}.mp4", seconds=10)  # the official download naming
    csv = tmp_path / "subset.csv"
    weak = llp.read_weak_labels("train")
    csv.write_text("filename\tevent_labels\n" + "".join(f"{v}\t{','.join(sorted(weak.classes_of(v)))}\n" for v in train))
    out = tmp_path / "data.h5"
    assert main(["--videos", str(tmp_path / "videos"), "--csv", str(csv), "--out", str(out), *ARGS]) == 3
    with Store(out) as s:
        assert list(s.ids) == [train[0]]
        assert s.video_field("split").tolist() == ["train"]
        np.testing.assert_array_equal(s.read("labels/weak")[0], weak.labels[weak.index_of(train[0])])
        assert [(f.id, f.stage) for f in s.failures()] == [(train[1], "missing")]


def test_decoding_only_the_needed_streams_changes_no_number(folder):
    from avvp.pipeline.core import ExtractionConfig, decode_job, load_backbones, run_backbones, streams_for
    from avvp.pipeline.jobs import VideoJob

    assert streams_for(["vggish"]) == (False, (16000,))
    assert streams_for(["r2plus1d", "clap"]) == (True, (48000,))
    cfg = ExtractionConfig(backbones=("vggish",), weights="random", device="cpu")
    job = VideoJob(id="plain", path=str(folder / "plain.mp4"))
    needed, full = decode_job(job, cfg), decode_job(job, cfg, all_streams=True)
    assert needed.frames is None and full.frames is not None  # vggish alone never decodes frames
    (backbone,) = load_backbones(cfg)
    a, b = (run_backbones([backbone], [job], [d])[0].arrays["vggish"]["features/vggish"] for d in (needed, full))
    np.testing.assert_array_equal(a, b)
    # an audio-only file is still not a video, whatever the backbones read
    assert "no video stream" in decode_job(VideoJob(id="a", path=str(folder / "audioonly.mp4")), cfg).message


def test_backbone_opt_is_typed_checked_and_the_deprecated_aliases_say_so(capsys):
    from avvp.cli.extract import build_parser, config_from_args

    parser = build_parser()
    base = ["--videos", "v", "--out", "o.h5", "--backbone", "clip", "--backbone", "clap"]
    new = config_from_args(parser.parse_args(base + ["--backbone-opt", "clip.model=ViT-B-32", "--backbone-opt",
                                                     "clip.pretrained=laion2b_s34b_b79k", "--backbone-opt",
                                                     "clap.ckpt=other.pt", "--backbone-opt", "clip.batch_frames=8"]))
    assert new.options_for("clip") == (("batch_frames", 8), ("model", "ViT-B-32"), ("pretrained", "laion2b_s34b_b79k"))
    assert new.options_for("clap") == (("ckpt", "other.pt"),)
    assert capsys.readouterr().err == ""
    old = config_from_args(parser.parse_args(base + ["--clip-model", "ViT-B-32", "--clip-pretrained", "laion2b_s34b_b79k",
                                                     "--clap-ckpt", "other.pt", "--backbone-opt", "clip.batch_frames=8"]))
    assert old == new
    notices = capsys.readouterr().err.splitlines()
    assert [line.split(" is deprecated")[0] for line in notices] == [
        "avvp-extract: NOTICE: --clip-model", "avvp-extract: NOTICE: --clip-pretrained", "avvp-extract: NOTICE: --clap-ckpt"]
    assert "use --backbone-opt clap.ckpt=other.pt" in notices[2]
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--backbone-opt", "vggish.post_process=true"])
    assert "vggish has no option 'post_process'; known: batch_examples, final_relu, postprocess" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch_frames: expected int, got 'many'"):
        config_from_args(parser.parse_args(base + ["--backbone-opt", "clip.batch_frames=many"]))
    assert main(base + ["--backbone-opt", "clip.batch_frames=0"]) == 2  # a bad value stops before any work
    assert "clip: batch_frames must be >= 1" in capsys.readouterr().err
