"""avvp-export: the released layouts, the round trip through avvp-import (values and attributes bit for
bit), the official dataloaders reading an export, and the refusals (non-release arrays, missing arrays,
ids that are no YouTube id, an output that is not writable)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avvp.cli.export import main
from avvp.data import llp
from avvp.data.export import PROVENANCE_NAME, export_release
from avvp.data.importer import import_released
from avvp.data.store import Store, StoreWriter, VideoRecord
from tests.helpers.release import (
    ALL_RELEASED, read_avvp_llp_dataset, read_valor_llp_dataset, released_like_store, write_llp_csv,
)

IDS = list(llp.split_ids("train")[:3]) + [llp.split_ids("test")[0]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    store = released_like_store(d / "data.h5", IDS)
    assert main(["--data", str(store), "--out", str(d / "release"), "--layout", "avvp"]) == 0
    assert main(["--data", str(store), "--out", str(d / "release"), "--layout", "valor"]) == 0
    return store, d / "release"


def test_layouts_are_the_released_ones(exported):
    _, out = exported
    ytids = sorted(v[:11] for v in IDS)
    for folder in ("feats/vggish", "feats/res152", "feats/r2plus1d_18", "CLIP/features", "CLAP/features",
                   "CLIP/segment_pseudo_labels", "CLAP/segment_pseudo_labels"):
        assert sorted(p.stem for p in (out / folder).glob("*.npy")) == ytids, folder
    assert np.load(out / "feats/res152" / f"{IDS[0][:11]}.npy").dtype == np.float32
    assert np.load(out / "CLIP/segment_pseudo_labels" / f"{IDS[0][:11]}.npy").dtype == np.uint8
    prov = json.loads((out / "feats" / PROVENANCE_NAME).read_text())
    entry = prov["folders"]["vggish"]
    assert (entry["backbone"], entry["weights"], entry["profile"], entry["precision"]) == \
        ("vggish", "pretrained:vggish-test", "reference", "fp32")
    assert entry["videos"] == 4 and entry["not_like_release"] == [] and prov["avvp_version"]
    assert set(json.loads((out / PROVENANCE_NAME).read_text())["folders"]) == {s.folder for s in ALL_RELEASED[3:]}


def test_round_trip_through_import_is_bit_for_bit(exported, tmp_path):
    store, out = exported
    import_released(tmp_path / "back.h5", feats_dir=out / "feats", valor_dir=out)
    with Store(store) as a, Store(tmp_path / "back.h5") as b:
        assert sorted(a.ids) == sorted(b.ids)
        ids = sorted(a.ids)
        for spec in ALL_RELEASED:
            x, y = a.read(spec.store_path, ids), b.read(spec.store_path, ids)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), spec.store_path
            ax, ay = a.attrs(spec.store_path), b.attrs(spec.store_path)
            assert set(ax) == set(ay) and all(np.array_equal(ax[k], ay[k]) for k in ax), (spec.store_path, ax, ay)
        np.testing.assert_array_equal(a.read("labels/weak", ids), b.read("labels/weak", ids))


def test_official_dataloaders_read_the_export(exported, tmp_path):
    store, out = exported
    csv = write_llp_csv(tmp_path / "AVVP_train.csv", IDS)
    feats = out / "feats"
    avvp = read_avvp_llp_dataset(csv, feats / "vggish", feats / "res152", feats / "r2plus1d_18")
    valor = read_valor_llp_dataset(csv, feats / "vggish", feats / "res152", feats / "r2plus1d_18",
                                   out / "CLIP/segment_pseudo_labels", out / "CLAP/segment_pseudo_labels")
    with Store(store) as s:
        for i, vid in enumerate(IDS):
            for key, path in (("audio", "features/vggish"), ("video_s", "features/resnet152"), ("video_st", "features/r2plus1d")):
                np.testing.assert_array_equal(avvp[i][key], s.read(path, [vid])[0])
                np.testing.assert_array_equal(valor[i][key], s.read(path, [vid])[0])
            np.testing.assert_array_equal(avvp[i]["label"], s.read("labels/weak", [vid])[0])
            np.testing.assert_array_equal(valor[i]["audio_pseudo_labels"], s.read("pseudo/audio", [vid])[0])
            np.testing.assert_array_equal(valor[i]["visual_pseudo_labels"], s.read("pseudo/visual", [vid])[0])
            assert valor[i]["video_name"] == vid
            # VALOR++ reads the CLIP / CLAP features the same way, by YouTube id
            assert np.load(out / "CLAP/features" / f"{vid[:11]}.npy").shape == (64, 768)
    assert avvp[0]["audio"].shape == (10, 128) and avvp[0]["video_s"].shape == (80, 2048)


def test_nonrelease_arrays_need_the_flag_and_say_so(tmp_path, capsys):
    store = released_like_store(tmp_path / "d.h5", IDS[:2], attrs_override={
        "features/vggish": {"random_weights": True}, "features/resnet152": {"profile": "clean"},
        "features/r2plus1d": {"precision": "bf16"}})
    assert main(["--data", str(store), "--out", str(tmp_path / "r"), "--layout", "avvp"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and "random weights" in err[0] and "profile clean" in err[1] and "precision bf16" in err[2]
    assert main(["--data", str(store), "--out", str(tmp_path / "r"), "--layout", "avvp", "--allow-nonrelease"]) == 0
    folders = json.loads((tmp_path / "r/feats" / PROVENANCE_NAME).read_text())["folders"]
    assert folders["vggish"]["not_like_release"] == ["random weights"]
    assert folders["res152"]["not_like_release"] == ["profile clean"]


def test_missing_arrays_bad_ids_and_unwritable_output(tmp_path, capsys):
    with StoreWriter(tmp_path / "v.h5") as w:
        for vid in (IDS[0], "sub/own clip"):
            w.add_video(VideoRecord(vid), {"features/vggish": np.ones((10, 128), np.float32)},
                        {"features/vggish": {"backbone": "vggish", "random_weights": False}})
    summary = export_release(tmp_path / "v.h5", tmp_path / "r", "avvp")
    assert summary.folders == {"vggish": 1}
    assert summary.problems[0].endswith("lacks /features/resnet152 for the avvp folder res152; it has /features/vggish")
    assert "sub/own clip: not an LLP filename or a YouTube id" in summary.problems[2]
    assert main(["--data", str(tmp_path / "v.h5"), "--out", str(tmp_path / "r"), "--layout", "valor"]) == 2
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--data", str(tmp_path / "v.h5"), "--out", str(blocker / "x"), "--layout", "avvp"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "has none of the arrays the valor layout needs" in err[0] and "is not writable" in err[-1]
