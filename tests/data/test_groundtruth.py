"""Segment ground truth is read in one place (avvp.data.groundtruth): the evaluation, the pseudo-label
calibration and the trainer's validation get the same arrays for the same store or annotations."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from avvp import metrics
from avvp.data import llp
from avvp.data.classes import LLP_CLASSES, NUM_SEGMENTS
from avvp.data.groundtruth import GroundTruthError, annotated_ground_truth, ground_truth_for, stored_ground_truth
from avvp.data.store import Store, StoreWriter, VideoRecord
from avvp.data.synthetic import SyntheticConfig, generate_synthetic
from avvp.extract.backbones import feature_specs
from avvp.pseudolabels import calibrate as cal
from avvp.train.config import DataConfig
from avvp.train.data import TrainingData

K = len(LLP_CLASSES)
AVVP = Path(__file__).resolve().parents[2] / "avvp"


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("gt") / "syn.h5"
    cfg = SyntheticConfig(num_train=4, num_val=5, num_test=3, features=("vggish", "clip"),
                          dims=(("vggish", 8), ("clip", 8)), seed=1)
    return path, generate_synthetic(path, cfg, feature_specs(cfg.features))


def test_three_callers_agree_on_a_store_with_gt(synthetic_store):
    path, videos = synthetic_store
    planted = [v for v in videos if v.split == "val"]
    want_a = np.stack([v.gt_audio for v in planted])
    want_v = np.stack([v.gt_visual for v in planted])
    assert want_a.any() and want_v.any()

    from_metrics = metrics.store_ground_truth(path, "val")
    from_calibration = cal.ground_truth_source(path).load("val")
    from_training = TrainingData(DataConfig(store=str(path), audio="vggish", visual="clip", motion=None),
                                 splits=("val",))["val"]
    assert list(from_metrics.ids) == [v.id for v in planted] == list(from_calibration.ids) == list(from_training.ids)
    for got_a, got_v in ((from_metrics.audio, from_metrics.visual), (from_calibration.audio, from_calibration.visual),
                         (from_training.gt_audio, from_training.gt_visual)):
        np.testing.assert_array_equal(got_a, want_a)
        np.testing.assert_array_equal(got_v, want_v)


def _llp_store(path: Path, names, classes=LLP_CLASSES, features=True):
    rng = np.random.default_rng(0)
    with StoreWriter(path, classes=classes) as w:
        for name in names:
            arrays = {"labels/weak": np.ones(len(classes), np.uint8)}
            if features:
                arrays.update({"features/vggish": rng.standard_normal((10, 4)).astype(np.float32),
                               "features/clip": rng.standard_normal((10, 4)).astype(np.float32)})
            w.add_video(VideoRecord(name, split="val"), arrays)
    return path


def test_three_callers_agree_on_llp_annotations(tmp_path):
    """A real-LLP store (no /gt): every caller reads the eval CSVs, also for the 2020 version."""
    ann = llp.read_eval_annotations("2024")
    # videos with audio events and visual events, so that an empty read cannot pass
    names = [n for n in llp.split_ids("val") if ann.ground_truth([n])[0].any() and ann.ground_truth([n])[1].any()][:4]
    path = _llp_store(tmp_path / "llp.h5", names)
    for version in ("2024", "2020"):
        want_a, want_v = llp.read_eval_annotations(version).ground_truth(names)
        full = metrics.llp_ground_truth("val", version)
        rows = [full.ids.index(n) for n in names]
        from_calibration = cal.ground_truth_source(path, version).load("val")
        from_training = TrainingData(DataConfig(store=str(path), audio="vggish", visual="clip", motion=None,
                                                annotations=version), splits=("val",))["val"]
        for got_a, got_v in ((full.audio[rows], full.visual[rows]), (from_calibration.audio, from_calibration.visual),
                             (from_training.gt_audio, from_training.gt_visual)):
            np.testing.assert_array_equal(got_a, want_a)
            np.testing.assert_array_equal(got_v, want_v)


def test_annotations_follow_the_callers_class_order_and_youtube_ids(tmp_path):
    names = list(llp.split_ids("test")[:6])
    want_a, want_v = llp.read_eval_annotations("2024").ground_truth(names)
    reversed_classes = tuple(reversed(LLP_CLASSES))
    keyed = [llp.ytid(names[0])] + names[1:]  # a store may key a video by its 11-char YouTube id
    gt = annotated_ground_truth(keyed, "2024", reversed_classes)
    assert gt.ids == tuple(keyed)
    np.testing.assert_array_equal(gt.audio, want_a[..., ::-1])
    np.testing.assert_array_equal(gt.visual, want_v[..., ::-1])
    # a store in another class order gets its own order through ground_truth_for
    path = _llp_store(tmp_path / "rev.h5", keyed, classes=reversed_classes, features=False)
    with Store(path) as store:
        np.testing.assert_array_equal(ground_truth_for(store, keyed).visual, want_v[..., ::-1])
    with pytest.raises(GroundTruthError, match="1 videos have no LLP eval annotations.*not_an_llp_video"):
        annotated_ground_truth(names[:2] + ["not_an_llp_video"])


def test_a_video_without_its_gt_row_is_an_error_not_an_empty_truth(tmp_path):
    path = tmp_path / "partial.h5"
    gt = np.zeros((NUM_SEGMENTS, K), np.uint8)
    gt[2:5, 3] = 1
    with StoreWriter(path) as w:
        w.add_video(VideoRecord("a", split="val"), {"gt/audio": gt, "gt/visual": gt})
        w.add_video(VideoRecord("b", split="val"), {"labels/weak": np.ones(K, np.uint8)})
    with Store(path) as store:
        assert stored_ground_truth(store, ["a"]).audio[0, 2:5, 3].tolist() == [1, 1, 1]
        with pytest.raises(GroundTruthError, match=r"1 videos .* have no /gt row: \['b'\]"):
            stored_ground_truth(store, ["a", "b"])
    with pytest.raises(ValueError, match="no /gt row"):
        metrics.store_ground_truth(path, "val")
    with pytest.raises(cal.PseudoLabelError, match="no /gt row"):
        cal.StoreGroundTruth(path).load("val")
    with pytest.raises(ValueError, match="no video of split 'test'"):
        metrics.store_ground_truth(path, "test")


def _reads_ground_truth(path: Path) -> list[str]:
    """What a module does that reads ground truth itself: a "gt/..." store path in a read/mask/has call, or
    an EvalAnnotations.ground_truth(...) call."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "ground_truth":
                found.append(f"line {node.lineno}: .ground_truth(...)")
            if node.func.attr in ("read", "mask", "has") and any(
                    isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.strip("/").startswith("gt/")
                    for a in node.args):
                found.append(f"line {node.lineno}: .{node.func.attr}('gt/...')")
    return found


def test_ground_truth_is_read_in_one_module():
    readers = {str(p.relative_to(AVVP)): hits for p in sorted(AVVP.rglob("*.py")) if (hits := _reads_ground_truth(p))}
    assert set(readers) == {"data/groundtruth.py"}, readers
    for caller in ("metrics.py", "pseudolabels/calibrate.py", "train/data.py"):
        assert "avvp.data.groundtruth" in (AVVP / caller).read_text(), caller


def test_the_guard_sees_a_second_reader(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f(store, ann, ids):\n    return store.read('gt/audio', ids), ann.ground_truth(ids)\n")
    assert _reads_ground_truth(module) == ["line 2: .read('gt/...')", "line 2: .ground_truth(...)"]
