"""avvp-import: released AVVP / VALOR folders → store, joined with the LLP CSVs, bad files → failure rows."""
from __future__ import annotations

import numpy as np
import pytest

from avvp.cli.import_feats import main
from avvp.data import llp
from avvp.data.store import Store

TRAIN, VAL, TEST = llp.split_ids("train")[0], llp.split_ids("val")[0], llp.split_ids("test")[0]


def _release(tmp_path):
    rng = np.random.default_rng(0)
    feats, valor = tmp_path / "feats", tmp_path / "valor"
    for sub in ("vggish", "res152", "r2plus1d_18"):
        (feats / sub).mkdir(parents=True)
    for sub in ("CLIP/features", "CLAP/features", "CLIP/segment_pseudo_labels", "CLAP/segment_pseudo_labels"):
        (valor / sub).mkdir(parents=True)
    values = {}
    for vid in (TRAIN, VAL, TEST):
        y = llp.ytid(vid)
        values[vid] = rng.standard_normal((10, 128)).astype(np.float32)
        np.save(feats / "vggish" / f"{y}.npy", values[vid])
        np.save(feats / "r2plus1d_18" / f"{y}.npy", np.ones((10, 512), np.float32))
        np.save(valor / "CLIP/segment_pseudo_labels" / f"{y}.npy", np.eye(10, 25, dtype=np.int64))
    for vid in (TRAIN, VAL):  # the test video has no res152 file: imported with what exists
        np.save(feats / "res152" / f"{llp.ytid(vid)}.npy", np.zeros((80, 2048), np.float32))
    np.save(valor / "CLIP/features" / f"{llp.ytid(TRAIN)}.npy", np.zeros((10, 512), np.float32))  # wrong shape
    (valor / "CLAP/features" / f"{llp.ytid(VAL)}.npy").write_bytes(b"")  # zero-byte file
    np.save(valor / "CLAP/features" / "NOT_A_YTID.npy", np.zeros((64, 768), np.float32))  # not an LLP video
    return feats, valor, values


def test_import_joins_llp_and_records_failures(tmp_path, capsys):
    feats, valor, values = _release(tmp_path)
    out = tmp_path / "data.h5"
    assert main(["--feats", str(feats), "--valor", str(valor), "--out", str(out)]) == 3  # some failed
    with Store(out) as s:
        assert sorted(s.ids) == sorted([TRAIN, VAL, TEST])
        splits = dict(zip(s.ids, s.video_field("split")))
        assert splits == {TRAIN: "train", VAL: "val", TEST: "test"}
        np.testing.assert_array_equal(s.read("features/vggish", [VAL])[0], values[VAL])
        weak = llp.read_weak_labels("full")
        np.testing.assert_array_equal(s.read("labels/weak", [TEST])[0], weak.labels[weak.index_of(TEST)])
        assert s.mask("features/resnet152")[s.index([TEST])[0]] == False  # noqa: E712
        assert s.read("pseudo/visual").dtype == np.uint8
        assert s.attrs("features/vggish")["weights"] == "released:avvp-feats"
        # the release's arrays record the same layout vocabulary the backbones write, so a model trained on
        # them pools ResNet's 80 frames by layout, not by guessing from the length
        layouts = {p: s.attrs(p)["layout"] for p in ("features/vggish", "features/resnet152", "features/r2plus1d", "pseudo/visual")}
        assert layouts == {"features/vggish": "segments", "features/resnet152": "frames",
                           "features/r2plus1d": "segments", "pseudo/visual": "segments"}
        assert s.attrs("features/resnet152")["axes"] == "frame(8 fps, 80) x dim"
        assert not s.has("features/clip")  # the only CLIP file was wrongly shaped
        failures = {(f.id, f.stage): f.message for f in s.failures()}
    assert "shape (10, 512), expected (10, 768)" in failures[(TRAIN, "import:CLIP/features")]
    assert "unreadable" in failures[(VAL, "import:CLAP/features")]
    assert ("NOT_A_YTID", "import:CLAP/features") in failures
    assert "imported 3 videos" in capsys.readouterr().out


def test_reimport_is_idempotent_and_fixes_failures(tmp_path):
    feats, valor, _ = _release(tmp_path)
    out = tmp_path / "data.h5"
    main(["--feats", str(feats), "--out", str(out)])
    np.save(valor / "CLIP/features" / f"{llp.ytid(TRAIN)}.npy", np.zeros((10, 768), np.float32))  # fixed file
    main(["--feats", str(feats), "--valor", str(valor), "--out", str(out)])
    main(["--feats", str(feats), "--valor", str(valor), "--out", str(out)])
    with Store(out) as s:
        assert len(s) == 3
        assert s.mask("features/clip").sum() == 1
        assert s.attrs("features/clip")["layout"] == "segments"
        assert (TRAIN, "import:CLIP/features") not in {(f.id, f.stage) for f in s.failures()}


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["--feats", str(tmp_path / "nope"), "--out", str(tmp_path / "d.h5")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_released_arrays_declare_a_known_layout():
    """Every released folder names one of the store's layouts; a free-text one is refused when declared."""
    from avvp.data.importer import AVVP_FEATS, VALOR_RELEASE, ReleasedArray
    from avvp.data.layouts import LAYOUTS, layout_by_length

    for spec in AVVP_FEATS + VALOR_RELEASE:
        assert spec.layout in LAYOUTS and spec.layout == layout_by_length(spec.shape[0])
    with pytest.raises(ValueError, match="res152: layout must be one of"):
        ReleasedArray("res152", "features/resnet152", (80, 2048), "float32", "resnet152", "frame(8 fps, 80) x dim",
                      "frame(8 fps, 80) x dim", "avvp-feats")
