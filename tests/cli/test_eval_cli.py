"""The `avvp-eval` command on LLP and store ground truth (the predictions file format: tests/data/test_predictions.py)."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from avvp import metrics
from avvp.cli.eval import main
from avvp.data import llp
from avvp.data.classes import LLP_CLASSES
from avvp.data.predictions import read_predictions, write_predictions


def oracle(ids, annotations="2024"):
    """Predictions equal to the ground truth: segment probs = GT, video prob = class in either modality."""
    gt_a, gt_v = llp.read_eval_annotations(annotations).ground_truth(ids)
    video = (gt_a.any(axis=1) | gt_v.any(axis=1)).astype(np.float32)
    return gt_a.astype(np.float32), gt_v.astype(np.float32), video


@pytest.fixture(scope="module")
def test_ids():
    return list(llp.split_ids("test"))


@pytest.fixture(scope="module")
def oracle_file(tmp_path_factory, test_ids):
    """Oracle predictions of the test split (2024 GT) plus one extra train video, which must be ignored."""
    audio, visual, video = oracle(test_ids)
    extra = llp.split_ids("train")[0]
    ids = test_ids + [extra]
    pad = lambda a: np.concatenate([a, np.full((1,) + a.shape[1:], 0.9, np.float32)])  # noqa: E731
    path = tmp_path_factory.mktemp("pred") / "oracle.h5"
    write_predictions(path, ids, pad(audio), pad(visual), pad(video), model="oracle")
    return path


def run_json(capsys, argv):
    code = main(argv + ["--json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)  # the whole stdout is exactly one JSON object


# ------------------------------------------------------------------------------------- avvp-eval
def test_oracle_scores_100_and_json_shape(capsys, oracle_file):
    out = run_json(capsys, ["--pred", str(oracle_file), "--split", "test"])
    assert list(out) == ["segment", "event", "avg", "gate", "gate_source"]
    for level in ("segment", "event"):
        assert out[level] == {m: 100.0 for m in ("audio", "visual", "audio_visual", "type", "event")}
    assert out["avg"] == 100.0


def test_2020_annotations_change_the_two_fixed_test_videos(capsys, oracle_file):
    """Against 2020 GT, the 2024 oracle over-predicts Speech in JfZEqeLZqWk_30_40 and Cat (segment 0) in
    KvIjsmANkxI_10_20; everything else stays perfect. Expected per-video scores by hand:
    JfZ: audio {Speech F 0, Baby_cry 1} -> 0.5 (segment and event);
    KvIj: audio {Speech 1, Cat TP 6 FP 1 -> 12/13} -> 25/26; event Cat TP 2 FP 1 -> 4/5, video 0.9;
    audio-visual Cat only: 12/13 (segment) and 4/5 (event)."""
    out = run_json(capsys, ["--pred", str(oracle_file), "--split", "test", "--annotations", "2020"])
    n = 1200
    assert out["segment"]["audio"] == pytest.approx(100 * (n - 2 + 0.5 + 25 / 26) / n, abs=1e-9)
    assert out["event"]["audio"] == pytest.approx(100 * (n - 2 + 0.5 + 0.9) / n, abs=1e-9)
    assert out["segment"]["audio_visual"] == pytest.approx(100 * (n - 1 + 12 / 13) / n, abs=1e-9)
    assert out["event"]["audio_visual"] == pytest.approx(100 * (n - 1 + 4 / 5) / n, abs=1e-9)
    assert out["segment"]["visual"] == 100.0 and out["event"]["visual"] == 100.0
    gt24 = llp.read_eval_annotations("2024").video_matrices("JfZEqeLZqWk_30_40")[0]
    gt20 = llp.read_eval_annotations("2020").video_matrices("JfZEqeLZqWk_30_40")[0]
    assert gt24[LLP_CLASSES.index("Speech")].sum() == 7 and gt20[LLP_CLASSES.index("Speech")].sum() == 0


def test_table_output(capsys, oracle_file):
    assert main(["--pred", str(oracle_file)]) == 0
    out = capsys.readouterr().out
    assert "Type@AV" in out and "Event@AV" in out and "(1200 videos)" in out
    seg_row = next(line for line in out.splitlines() if line.startswith("segment"))
    assert seg_row.split()[1:] == ["100.00"] * 5


def test_missing_videos_exit_2_naming_them(capsys, tmp_path, test_ids):
    audio, visual, video = oracle(test_ids)
    keep = slice(12, None)  # drop the first 12 test videos
    path = tmp_path / "partial.h5"
    write_predictions(path, test_ids[keep], audio[keep], visual[keep], video[keep])
    assert main(["--pred", str(path), "--split", "test", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "lacks 12 of 1200 requested videos" in captured.err
    assert all(v in captured.err for v in test_ids[:10]) and test_ids[10] not in captured.err
    assert "(and 2 more)" in captured.err
    # the val split is not in the file at all
    assert main(["--pred", str(path), "--split", "val"]) == 2
    assert "lacks 649 of 649" in capsys.readouterr().err


def test_bad_inputs_exit_2(capsys, oracle_file, tmp_path):
    assert main(["--pred", str(tmp_path / "nope.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--pred", str(oracle_file), "--split", "train"]) == 2
    assert "no segment annotations" in capsys.readouterr().err
    assert main(["--pred", str(oracle_file), "--gate", "modality"]) == 2  # file has no a_prob / v_prob
    assert "audio_video" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--pred", str(oracle_file), "--gate", "fused"])
    assert exc.value.code == 2


def test_per_class_and_overlap(capsys, oracle_file, test_ids):
    out = run_json(capsys, ["--pred", str(oracle_file), "--per-class", "--overlap"])
    assert list(out["per_class"]) == list(LLP_CLASSES)
    assert out["per_class"]["Speech"]["segment"]["audio"] == 100.0
    assert out["per_class"]["Speech"]["segment"]["videos"]["audio"] > 0
    gt_a, gt_v = llp.read_eval_annotations("2024").ground_truth(test_ids)
    n_overlap = int(metrics.overlapping_videos(gt_a, gt_v).sum())
    assert out["overlap"]["overlapping"]["num_videos"] == n_overlap
    assert out["overlap"]["non_overlapping"]["num_videos"] == 1200 - n_overlap
    assert 0 < n_overlap < 1200 and out["overlap"]["overlapping"]["event"]["type"] == 100.0
    assert main(["--pred", str(oracle_file), "--per-class", "--overlap"]) == 0
    text = capsys.readouterr().out
    assert "Baby_cry_infant_cry" in text and "overlapping videos (LEAP Table 3 split)" in text


def test_store_ground_truth_and_python_entry_points(capsys, tmp_path):
    """--data STORE: GT from /gt/{audio,visual} of the split's rows (plain h5py layout of the store)."""
    rng = np.random.default_rng(1)
    ids = [f"syn{i:03d}" for i in range(12)]
    splits = ["train"] * 4 + ["test"] * 8
    gt_a = (rng.random((12, 10, 25)) < 0.1).astype(np.uint8)
    gt_v = (rng.random((12, 10, 25)) < 0.1).astype(np.uint8)
    store = tmp_path / "store.h5"
    string = h5py.string_dtype("utf-8")
    with h5py.File(store, "w") as f:
        f.create_dataset("videos/id", data=np.array(ids, dtype=object), dtype=string)
        f.create_dataset("videos/split", data=np.array(splits, dtype=object), dtype=string)
        f["gt/audio"], f["gt/visual"] = gt_a, gt_v
    pa = rng.random((12, 10, 25)).astype(np.float32)
    pv = rng.random((12, 10, 25)).astype(np.float32)
    video = rng.random((12, 25)).astype(np.float32)
    pred = tmp_path / "syn.h5"
    order = rng.permutation(12)  # file order differs from store order
    write_predictions(pred, [ids[i] for i in order], pa[order], pv[order], video[order])
    out = run_json(capsys, ["--pred", str(pred), "--data", str(store), "--split", "test"])
    expected = metrics.evaluate(gt_a[4:], gt_v[4:], pa[4:], pv[4:], video[4:]).as_dict()
    assert out == expected | {"gate": "global", "gate_source": "standard protocol; the file records no gate"}
    assert metrics.evaluate_predictions(pred, "test", store=store).as_dict() == expected
    in_memory = metrics.evaluate_arrays(ids, pa, pv, video, split="test", store=store)
    assert in_memory.as_dict() == expected and in_memory.num_videos == 8
    assert main(["--pred", str(pred), "--data", str(store), "--split", "val"]) == 2
    assert "no video of split 'val'" in capsys.readouterr().err


def test_evaluate_arrays_on_llp(test_ids):
    audio, visual, video = oracle(test_ids, "2020")
    assert metrics.evaluate_arrays(test_ids, audio, visual, video, split="test", annotations="2020").avg == 100.0
    assert metrics.evaluate_arrays(test_ids, audio, visual, video, split="test").segment.audio < 100.0


# ------------------------------------------------------------------------------- the recorded gate
def test_the_gate_recorded_in_the_file_is_used_and_the_standard_number_is_shown_beside(capsys, test_ids, tmp_path):
    """One run, one number: avvp-eval scores with the gate the trainer recorded (here mmcse), says so, and
    prints the standard protocol's (global) table beside it; --gate still overrides."""
    audio, visual, video = oracle(test_ids)
    visual_video = video.copy()
    visual_video[::2] = 0.0  # mmcse gates the visual segments by v_prob: half the videos lose them
    path = tmp_path / "mmcse.h5"
    write_predictions(path, test_ids, audio, visual, video, visual_video=visual_video, audio_video=video,
                      model="mmcse", attrs={"gate": "mmcse"})
    gt = metrics.load_ground_truth("test", "2024", None)
    pred = read_predictions(path)
    want = {g: metrics.summarize(metrics.score_predictions(pred, gt, gate=g)).as_dict() for g in ("mmcse", "global")}
    assert want["mmcse"]["segment"]["type"] < want["global"]["segment"]["type"]  # the two gates differ here

    out = run_json(capsys, ["--pred", str(path)])
    assert (out["gate"], out["gate_source"]) == ("mmcse", "recorded in the predictions file")
    assert {k: out[k] for k in ("segment", "event", "avg")} == want["mmcse"]
    assert out["standard_protocol"] == want["global"] | {"gate": "global"}

    assert main(["--pred", str(path)]) == 0
    text = capsys.readouterr().out
    assert "gate=mmcse (recorded in the predictions file)" in text.splitlines()[0]
    assert f"standard protocol, for comparison with papers: gate=global (segment Type@AV {want['global']['segment']['type']:.2f}" in text

    out = run_json(capsys, ["--pred", str(path), "--gate", "global"])
    assert (out["gate"], out["gate_source"]) == ("global", "--gate") and "standard_protocol" not in out
    assert {k: out[k] for k in ("segment", "event", "avg")} == want["global"]


def test_a_file_without_a_gate_is_scored_with_the_standard_protocol(capsys, oracle_file):
    out = run_json(capsys, ["--pred", str(oracle_file)])
    assert (out["gate"], out["gate_source"]) == ("global", "standard protocol; the file records no gate")
    assert "standard_protocol" not in out
