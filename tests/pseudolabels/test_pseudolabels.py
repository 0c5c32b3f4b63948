"""VALOR pseudo-labels, EIoU, calibration and report: the rule bit for bit, both EIoU definitions against
hand-computed matrices (incl. the LEAP paper's worked example), a calibration that never reads test labels,
store round trips, idempotence, and the CLI on small synthetic stores."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avvp.cli import pseudolabel as cli
from avvp.pseudolabels import run as stage
from avvp.data.classes import LLP_CLASSES
from avvp.data.store import Store, StoreWriter, VideoRecord
from avvp.data.synthetic import SyntheticConfig, generate_synthetic
from avvp.extract.backbones import feature_specs
from avvp.pseudolabels import calibrate as cal
from avvp.pseudolabels.eiou import compute_eiou, eiou_leap_code, eiou_paper
from avvp.pseudolabels.report import pseudo_label_quality
from avvp.pseudolabels.valor import (
    TEACHERS,
    VALOR_CLAP_THRESHOLDS,
    VALOR_CLIP_THRESHOLDS,
    PseudoLabelError,
    parse_thresholds,
    valor_rule,
)

K = 25
CLIP, CLAP = TEACHERS.get("visual"), TEACHERS.get("audio")


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pl") / "data.h5"
    syn = SyntheticConfig(num_train=40, num_val=20, num_test=20, features=("vggish",), dims=(("vggish", 8),), seed=3)
    generate_synthetic(path, syn, feature_specs(syn.features))
    return path


@pytest.fixture
def store_copy(synthetic_store, tmp_path) -> Path:
    dst = tmp_path / "data.h5"
    shutil.copy(synthetic_store, dst)
    return dst


def _loop_rule(logits, weak, thr):
    """Independent, literal implementation of VALOR's rule (per video, segment, class)."""
    out = np.zeros(logits.shape, np.uint8)
    for v in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            for c in range(logits.shape[2]):
                if weak[v, c] == 1 and float(logits[v, t, c]) > float(thr[c]):
                    out[v, t, c] = 1
    return out


# --------------------------------------------------------------------------------------- thresholds
def test_valor_thresholds_are_the_reference_values():
    # reference-methods §2 (VALOR utils/clip_preprocess.py, utils/clap_preprocess.py), LLP class order
    assert VALOR_CLIP_THRESHOLDS == (20, 15, 18, 14, 15, 18, 18, 15, 15, 15, 15, 18, 15, 15, 15, 15, 15, 15, 15, 16,
                                     14, 15, 15, 15, 18)
    assert VALOR_CLAP_THRESHOLDS == (0, 0, 1, 4, 6, -2, 4, 4, 2, 2, 2, 1, 2, 3, 0, 2, 2, 2, 0, 2, -1, 2, 3, 3, 0)
    assert CLIP.default_thresholds is VALOR_CLIP_THRESHOLDS and CLAP.default_thresholds is VALOR_CLAP_THRESHOLDS
    assert (CLIP.zeroshot_path, CLIP.pseudo_path, CLAP.zeroshot_path, CLAP.pseudo_path) == (
        "zeroshot/clip", "pseudo/visual", "zeroshot/clap", "pseudo/audio")


def test_parse_thresholds_forms(tmp_path):
    values = [float(i) - 3.5 for i in range(K)]
    assert parse_thresholds(",".join(map(str, values)), CLIP).values == tuple(values)
    txt = tmp_path / "t.txt"
    txt.write_text("# my thresholds\n" + " ".join(map(str, values[:10])) + "\n" + ",".join(map(str, values[10:])) + "\n")
    assert parse_thresholds(str(txt), CLIP).values == tuple(values)
    js = tmp_path / "t.json"
    js.write_text(json.dumps(values))
    assert parse_thresholds(str(js), CLAP).values == tuple(values)
    js.write_text(json.dumps({c: v for c, v in zip(LLP_CLASSES, values)}))
    assert parse_thresholds(str(js), CLAP).values == tuple(values)
    js.write_text(json.dumps({"calibrated": True, "classes": list(LLP_CLASSES), "clip": values, "clap": values[::-1]}))
    both = parse_thresholds(str(js), CLAP)
    assert both.values == tuple(values[::-1]) and both.calibrated
    # a store with another class order gets the thresholds reordered by name
    sub = parse_thresholds(",".join(map(str, values)), CLIP).for_classes(["Car", "Speech"])
    assert sub.values == (values[1], values[0])
    with pytest.raises(PseudoLabelError, match="24 thresholds for 25 classes"):
        parse_thresholds(",".join(map(str, values[:24])), CLIP)
    with pytest.raises(PseudoLabelError, match="'abc' is not a number"):
        parse_thresholds("1,abc," + ",".join(["1"] * 23), CLIP)
    with pytest.raises(PseudoLabelError, match="does not exist"):
        parse_thresholds(str(tmp_path / "missing.json"), CLIP)
    with pytest.raises(PseudoLabelError, match="non-finite"):
        parse_thresholds(",".join(["nan"] + ["1"] * 24), CLIP)


# --------------------------------------------------------------------------------------------- rule
def test_rule_is_strict_and_respects_the_weak_label():
    thr = np.asarray(VALOR_CLIP_THRESHOLDS, np.float64)
    logits = np.full((2, 10, K), -100.0, np.float32)
    weak = np.zeros((2, K), np.uint8)
    weak[0, [0, 3]] = 1
    logits[0, 0, 0] = 20.0  # exactly the threshold of Speech: NOT a positive (strict >)
    logits[0, 1, 0] = np.nextafter(np.float32(20.0), np.float32(np.inf))  # the next float32 up: positive
    logits[0, 2, 3] = 14.5  # Dog (threshold 14), in the weak label: positive
    logits[0, 3, 1] = 99.0  # Car far above its threshold but not in the weak label: never a positive
    logits[1] = 99.0  # a video with an empty weak label gets no label at all
    labels = valor_rule(logits, weak, thr)
    assert labels.dtype == np.uint8 and labels.shape == (2, 10, K)
    expected = np.zeros((2, 10, K), np.uint8)
    expected[0, 1, 0] = expected[0, 2, 3] = 1
    np.testing.assert_array_equal(labels, expected)

    rng = np.random.default_rng(0)
    logits = (thr + rng.integers(-2, 3, size=(7, 10, K))).astype(np.float32)  # many exact ties
    weak = (rng.random((7, K)) < 0.3).astype(np.uint8)
    np.testing.assert_array_equal(valor_rule(logits, weak, thr), _loop_rule(logits, weak, thr))


# --------------------------------------------------------------------------------------------- EIoU
def _worked_example():
    """LEAP paper §3.3: audio segment a1 = {c1,c2,c3}; visual v1 = {c1}, v2 = {c1,c2}; all else empty."""
    pa = np.zeros((10, K), np.uint8)
    pv = np.zeros((10, K), np.uint8)
    pa[0, [1, 2, 3]] = 1
    pv[0, 1] = 1
    pv[1, [1, 2]] = 1
    return pa, pv


def test_eiou_paper_worked_example_and_hand_matrix():
    pa, pv = _worked_example()
    r = eiou_paper(pa, pv)
    assert r.dtype == np.float32 and r.shape == (10, 10)
    expected = np.zeros((10, 10), np.float32)
    expected[0, 0] = 1 / 3
    expected[0, 1] = 2 / 3
    np.testing.assert_array_equal(r, expected)  # empty∩empty and set∩empty are 0 (documented)

    # a second hand-computed case: a = {0,1} on segments 0-1, {2} on 2; v = {1} on 0, {1,2} on 1, {0,1} on 3
    pa, pv = np.zeros((10, K)), np.zeros((10, K))
    pa[0:2, [0, 1]] = 1
    pa[2, 2] = 1
    pv[0, 1] = 1
    pv[1, [1, 2]] = 1
    pv[3, [0, 1]] = 1
    expected = np.zeros((10, 10))
    expected[0:2, 0] = 1 / 2  # {0,1} vs {1}
    expected[0:2, 1] = 1 / 3  # {0,1} vs {1,2}
    expected[0:2, 3] = 1.0  # {0,1} vs {0,1}
    expected[2, 1] = 1 / 2  # {2} vs {1,2}
    np.testing.assert_allclose(eiou_paper(pa, pv), expected, rtol=0, atol=1e-7)


def test_eiou_leap_code_hand_matrix():
    pa, pv = _worked_example()
    r = eiou_leap_code(pa, pv)
    # n = max(max_t |A_t| = 3, max_t |V_t| = 2) = 3; r = (M/3)/(1+M/3) + 0.01
    expected = np.full((10, 10), 0.01)
    expected[0, 0] = (1 / 3) / (4 / 3) + 0.01  # M = 1 → 0.26
    expected[0, 1] = (2 / 3) / (5 / 3) + 0.01  # M = 2 → 0.41
    np.testing.assert_allclose(r, expected, rtol=0, atol=1e-7)
    assert r.dtype == np.float32
    # the code's own expression sigmoid(log(M/n)) + eps gives the same numbers where M > 0
    m = np.array([1.0, 2.0])
    np.testing.assert_allclose([r[0, 0], r[0, 1]], 1 / (1 + np.exp(-np.log(m / 3))) + 0.01, atol=1e-7)
    # a video without any pseudo-label: n = 1e-8, M = 0 → eps everywhere
    np.testing.assert_array_equal(eiou_leap_code(np.zeros((10, K)), np.zeros((10, K))), np.full((10, 10), np.float32(0.01)))


def test_eiou_is_vectorised_over_videos():
    rng = np.random.default_rng(1)
    pa = (rng.random((6, 10, K)) < 0.1).astype(np.uint8)
    pv = (rng.random((6, 10, K)) < 0.1).astype(np.uint8)
    for name, fn in (("paper", eiou_paper), ("leap-code", eiou_leap_code)):
        batch = compute_eiou(pa, pv, name)
        assert batch.shape == (6, 10, 10)
        for v in range(6):
            np.testing.assert_array_equal(batch[v], fn(pa[v], pv[v]))
    with pytest.raises(KeyError, match="known: leap-code, paper"):
        compute_eiou(pa, pv, "iou")


# -------------------------------------------------------------------------------------- calibration
def test_class_search_hand_example_and_brute_force():
    # entries of weak videos with logits 5,4,3,2,1 and GT 1,1,0,1,0; one GT positive outside the weak label
    logits = np.array([[5, 4, 3, 2, 1, 0, 0, 0, 0, 0], [9, 9, 9, 9, 9, 9, 9, 9, 9, 9]], np.float32)
    weak = np.array([1, 0])
    gt = np.array([[1, 1, 0, 1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    # logits 0 of video 0 are candidates too (below 1). Best: switch on {5,4,3,2} → TP 3, FP 1, FN 1: 6/8
    s = cal.search_class_threshold(logits, weak, gt, start=4.5)
    assert s.threshold == 1.5 and s.f_after == pytest.approx(6 / 8)
    assert s.f_before == pytest.approx(2 / (1 + 4))  # start 4.5: only 5 on → TP 1, FP 0, FN 3

    rng = np.random.default_rng(2)
    n = 30
    logits = rng.normal(size=(n, 10, K)).round(1).astype(np.float32)  # coarse values: many ties
    weak = (rng.random((n, K)) < 0.4).astype(np.uint8)
    gt = ((logits + rng.normal(scale=0.7, size=logits.shape)) > 0.5).astype(np.uint8)
    searches = cal.search_thresholds(logits, weak, gt, np.zeros(K))
    grid = np.unique(logits)
    grid = np.r_[grid[0] - 1, (grid[:-1] + grid[1:]) / 2, grid[-1] + 1]
    for c in range(K):
        brute = max(cal.pooled_class_f(valor_rule(logits[..., c:c + 1], weak[:, c:c + 1], np.array([t])),
                                       gt[..., c:c + 1])[0] for t in grid)
        assert searches[c].f_after == pytest.approx(brute, abs=1e-12)
        assert searches[c].f_after >= searches[c].f_before


class _GuardedSource:
    """A GT source that records what is loaded and refuses the test split while `locked`."""

    def __init__(self, inner):
        self.inner, self.loaded, self.locked = inner, [], True
        self.description = inner.description

    def load(self, split):
        if split == "test" and self.locked:
            raise AssertionError("test ground truth read before the thresholds were fixed")
        self.loaded.append(split)
        return self.inner.load(split)


def test_calibration_never_reads_test_labels(store_copy, monkeypatch):
    source = _GuardedSource(cal.StoreGroundTruth(store_copy))
    start = {"audio": stage.default_thresholds(CLAP), "visual": stage.default_thresholds(CLIP)}
    result = cal.calibrate(store_copy, source, start)
    assert source.loaded == ["val"]
    assert set(result) == {"audio", "visual"} and all(c.thresholds.calibrated for c in result.values())
    with pytest.raises(PseudoLabelError, match="never calibrated on the test split"):
        cal.calibrate(store_copy, source, start, split="test")

    # the stage: test GT only after `calibrate` has returned (the guard unlocks exactly then)
    source = _GuardedSource(cal.StoreGroundTruth(store_copy))
    real = stage.calibrate

    def calibrate_then_unlock(*args, **kwargs):
        out = real(*args, **kwargs)
        source.locked = False
        return out

    monkeypatch.setattr(stage, "calibrate", calibrate_then_unlock)
    run = stage.run_pseudolabels(stage.PseudoLabelRunConfig(store_copy, calibrate_split="val"), source, echo=lambda s: None)
    assert source.loaded == ["val", "val", "test"] and set(run.gains) == {"val", "test"}
    # calibration maximises the pooled val objective class by class, so it can only go up on val
    for c in run.calibrations.values():
        assert (c.val_f_after >= c.val_f_before).all()


# ------------------------------------------------------------------------------------- store + CLI
def test_store_round_trip_and_idempotence(store_copy):
    assert cli.main(["--data", str(store_copy), "--eiou", "paper"]) == 0
    with Store(store_copy) as s:
        n = len(s)
        weak = s.read("labels/weak")
        for teacher, thr in ((CLIP, VALOR_CLIP_THRESHOLDS), (CLAP, VALOR_CLAP_THRESHOLDS)):
            labels = s.read(teacher.pseudo_path)
            assert labels.dtype == np.uint8 and labels.shape == (n, 10, K)
            np.testing.assert_array_equal(labels, _loop_rule(s.read(teacher.zeroshot_path), weak, thr))
            attrs = s.attrs(teacher.pseudo_path)
            assert attrs["rule"] == "valor" and attrs["source"] == teacher.zeroshot_path
            assert not attrs["calibrated"]
            np.testing.assert_array_equal(attrs["thresholds"], np.asarray(thr, np.float64))
        first = {p: s.read(p) for p in ("pseudo/audio", "pseudo/visual", "pseudo/eiou")}
        assert s.attrs("pseudo/eiou")["definition"] == "paper"
        np.testing.assert_array_equal(first["pseudo/eiou"], eiou_paper(first["pseudo/audio"], first["pseudo/visual"]))
    # other thresholds, then the defaults again: rows are replaced, never appended
    assert cli.main(["--data", str(store_copy), "--clip-thresholds", ",".join(["0"] * K)]) == 0
    with Store(store_copy) as s:
        assert s.attrs("pseudo/visual")["threshold_origin"] == "command line"
        np.testing.assert_array_equal(s.read("pseudo/visual"),
                                      _loop_rule(s.read("zeroshot/clip"), s.read("labels/weak"), np.zeros(K)))
    assert cli.main(["--data", str(store_copy), "--eiou", "paper"]) == 0
    with Store(store_copy) as s:
        assert len(s) == n and len(set(s.ids)) == n
        for p, value in first.items():
            np.testing.assert_array_equal(s.read(p), value)
            assert s.mask(p).all()
        assert s.attrs("pseudo/visual")["threshold_origin"] == "valor"
    assert not Path(str(store_copy) + ".journal").exists()


def test_cli_calibrate_write_and_report(store_copy, tmp_path, capsys):
    report_dir = tmp_path / "charts"
    rc = cli.main(["--data", str(store_copy), "--calibrate", "val", "--write-thresholds", "--report",
                   "--report-dir", str(report_dir)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "calibration gain on test" in out and "per-class segment F" in out
    charts = sorted(report_dir.glob("*.png"))
    assert [c.name for c in charts] == ["pseudolabel_class_f_test.png", "pseudolabel_class_f_val.png"]
    assert all(c.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for c in charts)
    json_path = store_copy.with_name("data.valor_thresholds.json")
    for teacher in (CLIP, CLAP):
        from_file = parse_thresholds(str(json_path), teacher)
        assert from_file.calibrated
        with Store(store_copy) as s:
            attrs = s.attrs(teacher.pseudo_path)
            assert attrs["calibrated"]
            np.testing.assert_array_equal(attrs["thresholds"], from_file.array())
            np.testing.assert_array_equal(s.read(teacher.pseudo_path),
                                          _loop_rule(s.read(teacher.zeroshot_path), s.read("labels/weak"), from_file.array()))
    # feeding the written file back reproduces the calibrated labels exactly
    with Store(store_copy) as s:
        calibrated = s.read("pseudo/visual")
    assert cli.main(["--data", str(store_copy), "--clip-thresholds", str(json_path)]) == 0
    with Store(store_copy) as s:
        np.testing.assert_array_equal(s.read("pseudo/visual"), calibrated)
        assert s.attrs("pseudo/visual")["calibrated"]
    assert cli.main(["--data", str(store_copy), "--write-thresholds"]) == 2  # needs --calibrate
    assert "needs --calibrate val" in capsys.readouterr().err


def test_report_of_perfect_labels_is_100(synthetic_store):
    with Store(synthetic_store) as s:
        gt = cal.StoreGroundTruth(synthetic_store).load("test")
        weak = s.read("labels/weak", gt.ids)
        q = pseudo_label_quality(gt.audio, gt.visual, weak, gt, s.classes)
    assert q.videos == 20
    for level in (q.result.segment, q.result.event):
        assert level.audio == level.visual == level.audio_visual == level.type == level.event == 100.0


def _tiny_store(path: Path, with_logits: bool = True):
    """Three videos: v0 normal, v1 without audio stream, v2 without any zero-shot row."""
    weak = np.zeros(K, np.uint8)
    weak[[0, 3]] = 1
    hot = np.full((10, K), 50.0, np.float32)
    with StoreWriter(path) as w:
        for vid, has_audio in (("v0", True), ("v1", False), ("v2", True)):
            arrays = {"labels/weak": weak}
            if with_logits and vid != "v2":
                arrays |= {"zeroshot/clip": hot, "zeroshot/clap": hot}
            if not with_logits:
                arrays |= {"pseudo/audio": np.eye(10, K, dtype=np.uint8), "pseudo/visual": np.eye(10, K, k=1, dtype=np.uint8)}
            attrs = {} if with_logits else {p: {"source": "valor-release", "backbone": "clip", "weights": "released"}
                                            for p in ("pseudo/audio", "pseudo/visual")}
            w.add_video(VideoRecord(vid, split="train", has_audio=has_audio), arrays, attrs)


def test_missing_logits_and_silent_videos_get_zeros(tmp_path, capsys):
    path = tmp_path / "tiny.h5"
    _tiny_store(path)
    assert cli.main(["--data", str(path)]) == 0
    out = capsys.readouterr().out
    assert "zeros for 1 videos without logits, 1 without audio" in out  # audio
    assert "zeros for 1 videos without logits, 0 without audio" in out  # visual
    with Store(path) as s:
        a, v = s.read("pseudo/audio"), s.read("pseudo/visual")
        assert a[0].sum() == 20 and a[1].sum() == 0 and a[2].sum() == 0
        assert v[0].sum() == 20 and v[1].sum() == 20 and v[2].sum() == 0
        assert s.attrs("pseudo/audio")["videos_without_audio"] == 1
        assert s.attrs("pseudo/visual")["videos_without_logits"] == 1


def test_imported_labels_get_eiou_only(tmp_path, capsys):
    path = tmp_path / "imported.h5"
    _tiny_store(path, with_logits=False)
    assert cli.main(["--data", str(path), "--eiou", "paper"]) == 0
    assert "stored (not recomputed)" in capsys.readouterr().out
    with Store(path) as s:
        assert s.attrs("pseudo/audio")["source"] == "valor-release" and "rule" not in s.attrs("pseudo/audio")
        np.testing.assert_array_equal(s.read("pseudo/audio")[0], np.eye(10, K, dtype=np.uint8))
        expected = eiou_paper(np.eye(10, K), np.eye(10, K, k=1))
        np.testing.assert_array_equal(s.read("pseudo/eiou"), np.stack([expected] * 3))
    # thresholds only apply to computed labels
    assert cli.main(["--data", str(path), "--clip-thresholds", ",".join(["1"] * K)]) == 2
    assert "imported VALOR release labels" in capsys.readouterr().err


def test_store_without_logits_names_the_backbone(tmp_path, capsys):
    path = tmp_path / "bare.h5"
    with StoreWriter(path) as w:
        w.add_video(VideoRecord("v0", split="val"), {"labels/weak": np.ones(K, np.uint8)})
    assert cli.main(["--data", str(path), "--report"]) == 2
    err = capsys.readouterr().err
    assert "avvp-extract --backbone clap" in err or "avvp-extract --backbone clip" in err


def test_llp_ground_truth_matches_store_ids(tmp_path):
    from avvp.data import llp

    names = list(llp.split_ids("val")[:3])
    path = tmp_path / "llp.h5"
    with StoreWriter(path) as w:
        for i, name in enumerate(names):  # the middle video is keyed by its 11-char YouTube id
            vid = llp.ytid(name) if i == 1 else name
            w.add_video(VideoRecord(vid, split="val"), {"labels/weak": np.zeros(K, np.uint8)})
    gt = cal.ground_truth_source(path, "2024").load("val")
    ann_a, ann_v = llp.read_eval_annotations("2024").ground_truth(names)
    np.testing.assert_array_equal(gt.audio, ann_a)
    np.testing.assert_array_equal(gt.visual, ann_v)
