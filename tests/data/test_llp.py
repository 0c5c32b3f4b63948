"""Facts of the bundled LLP CSVs (reference-methods §1a) and the behaviour of the readers."""
from __future__ import annotations

import hashlib
from collections import Counter
from importlib import resources

import numpy as np
import pytest

from avvp.data import llp
from avvp.data.classes import CLASS_INDEX, LLP_CLASSES

MD5 = {
    "AVVP_dataset_full.csv": "214b996efd41f3dfa08ed49426c85969",
    "AVVP_train.csv": "cefac8ac8de324ca2018c11871928f8c",
    "AVVP_val_pd.csv": "fa1465a99f73ab42a510b6f67b682fd7",
    "AVVP_test_pd.csv": "119973bc9535a425c49b517f73aaf3b4",
    "AVVP_eval_audio.csv": "98d8ce2369078d43aa1df26d3ef2894c",
    "AVVP_eval_visual.csv": "3d25e5a6033e2ef7c7e391cfbfdc01f9",
    "2020/AVVP_eval_audio.csv": "a8b6b747e59a4ea2501e51cd717f3b4f",
}


@pytest.mark.parametrize("name", sorted(MD5))
def test_bundled_files_are_the_official_ones(name):
    data = resources.files("avvp.data").joinpath("llp", *name.split("/")).read_bytes()
    assert hashlib.md5(data).hexdigest() == MD5[name]


def test_split_sizes_disjoint_and_union_is_full():
    sizes = {s: len(llp.read_weak_labels(s)) for s in ("train", "val", "test", "full")}
    assert sizes == {"train": 10000, "val": 649, "test": 1200, "full": 11849}
    sets = {s: set(llp.split_ids(s)) for s in ("train", "val", "test")}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == set(llp.split_ids("full"))


def test_weak_labels_matrix_and_label_counts():
    train = llp.read_weak_labels("train")
    assert train.labels.shape == (10000, 25) and train.labels.dtype == np.uint8
    assert Counter(train.labels.sum(axis=1).tolist()) == {1: 4032, 2: 5879, 3: 89}
    # first data row of AVVP_train.csv: BjCEufrlXm4_20_30  Speech,Dog
    assert train.ids[0] == "BjCEufrlXm4_20_30"
    assert train.classes_of("BjCEufrlXm4_20_30") == frozenset({"Speech", "Dog"})
    assert np.flatnonzero(train.labels[0]).tolist() == [CLASS_INDEX["Speech"], CLASS_INDEX["Dog"]]
    with pytest.raises(ValueError):
        train.labels[0, 0] = 0  # cached arrays are read-only
    full = llp.read_weak_labels("full")
    for split in ("train", "val", "test"):
        part = llp.read_weak_labels(split)
        rows = [full.index_of(v) for v in part.ids]
        assert np.array_equal(full.labels[rows], part.labels)


def test_split_of_and_ids():
    assert llp.split_of("BjCEufrlXm4_20_30") == "train"
    assert llp.split_of("JfZEqeLZqWk_30_40") == "test"
    assert llp.split_of(llp.split_ids("val")[0]) == "val"
    with pytest.raises(KeyError, match="no LLP split"):
        llp.split_of("VMTJRpjbE_150_160")  # an orphan eval filename
    assert llp.ytid("BjCEufrlXm4_20_30") == "BjCEufrlXm4"
    mapping = llp.ytid_to_filename("full")
    assert len(mapping) == 11849 and mapping["BjCEufrlXm4"] == "BjCEufrlXm4_20_30"
    assert all(k == v[:11] for k, v in mapping.items())
    assert llp.parse_clip_name("AP0061o0Nvk_101.8_111.8") == llp.ClipName("AP0061o0Nvk", 101.8, 111.8)
    # an id containing '_' and '-' is still split at 11 characters
    clip = llp.parse_clip_name("a_b-c_d_e_f_30_40")
    assert (clip.ytid, clip.start, clip.end) == ("a_b-c_d_e_f", 30.0, 40.0)
    with pytest.raises(ValueError):
        llp.parse_clip_name("VMTJRpjbE_150_160")


def test_eval_rows_counts_and_coverage():
    rows = llp.eval_rows("2024")
    val, test = set(llp.split_ids("val")), set(llp.split_ids("test"))
    assert len(rows["audio"]) == 4131 and len(rows["visual"]) == 2495
    audio_names = {r.filename for r in rows["audio"]}
    visual_names = {r.filename for r in rows["visual"]}
    assert len(audio_names) == 1848 and len(visual_names) == 1665
    assert (len(audio_names & val), len(audio_names & test)) == (645, 1195)
    assert (len(visual_names & val), len(visual_names & test)) == (579, 1079)
    assert val | test <= audio_names | visual_names  # every val/test video has at least one row


def test_eval_annotations_orphans_and_empty_rows():
    ann = llp.read_eval_annotations("2024")
    assert len(ann) == 1849 and ann.audio.shape == (1849, 10, 25) and ann.audio.dtype == np.uint8
    assert len(ann.orphans("audio")) == 14 and len(ann.orphans("visual")) == 11
    assert len(ann.orphan_filenames("audio")) == 8 and len(ann.orphan_filenames("visual")) == 7
    assert {"12eWNawPekw_30_40", "19jWnmYnlD8_30_400", "VMTJRpjbE_150_160"} <= set(ann.orphan_filenames())
    zero = [r for r in ann.empty_rows if r.onset == r.offset]
    reversed_ = [r for r in ann.empty_rows if r.onset > r.offset]
    assert len(zero) == 5 and len(reversed_) == 1
    assert {r.modality for r in ann.empty_rows} == {"audio"}
    assert ("H5WcJwyjxIg_2_12", 0, 0) in {(r.filename, r.onset, r.offset) for r in zero}
    rev = reversed_[0]
    assert (rev.filename, rev.onset, rev.offset, rev.label) == ("8DF2PxdT5tE_390_400", 9, 0, "Cheering")
    # the reversed row contributes nothing: that video has no audio Cheering
    ga, _ = ann.video_matrices("8DF2PxdT5tE_390_400")
    assert ga[CLASS_INDEX["Cheering"]].sum() == 0
    # 191 val+test videos have no visual event at all
    assert int((ann.visual.reshape(len(ann), -1).sum(axis=1) == 0).sum()) == 191
    assert len(llp.read_eval_annotations("2020").orphans("audio")) == 17


def test_ground_truth_is_built_as_the_reference():
    """Rebuild GT from the raw rows with the reference's rule GT[c, onset:offset] = 1 on (25, 10) matrices."""
    ann = llp.read_eval_annotations("2024")
    rows = llp.eval_rows("2024")
    expected = {m: {vid: np.zeros((25, 10)) for vid in ann.ids} for m in ("audio", "visual")}
    for m in ("audio", "visual"):
        for r in rows[m]:
            if r.filename in expected[m]:
                expected[m][r.filename][CLASS_INDEX[r.label], r.onset : r.offset] = 1
    for vid in ann.ids:
        ga, gv = ann.video_matrices(vid)
        assert np.array_equal(ga, expected["audio"][vid]) and np.array_equal(gv, expected["visual"][vid]), vid
    # a row fully inside the matrix: 4YdbENYcIyE_23_33 0 4 Baby_cry_infant_cry (segments 0..3)
    ga, _ = ann.video_matrices("4YdbENYcIyE_23_33")
    assert ga[CLASS_INDEX["Baby_cry_infant_cry"]].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_2020_vs_2024_differ_exactly_in_the_three_fixed_rows():
    new, old = llp.read_eval_annotations("2024"), llp.read_eval_annotations("2020")
    assert new.ids == old.ids and np.array_equal(new.visual, old.visual)
    diff = {(new.ids[i], t, LLP_CLASSES[c]) for i, t, c in np.argwhere(new.audio != old.audio)}
    speech = {("JfZEqeLZqWk_30_40", t, "Speech") for t in (0, 1, 2, 3, 7, 8, 9)}
    assert diff == speech | {("KvIjsmANkxI_10_20", 0, "Cat")}
    assert all(new.audio[new.ids.index(v), t, CLASS_INDEX[c]] == 1 for v, t, c in diff)
    assert "Baby_cry_infant_cry" in old.orphan_filenames("audio") and "KvIjsmANkxI_10_20`" in old.orphan_filenames()


def test_eval_classes_vs_weak_labels():
    rows = llp.eval_rows("2024")
    weak = llp.read_weak_labels("full")
    val_test = set(llp.split_ids("val")) | set(llp.split_ids("test"))
    off_label = [r for m in rows for r in rows[m] if r.filename in val_test and r.label not in weak.classes_of(r.filename)]
    assert len(off_label) == 127
    annotated: dict[str, set[str]] = {}
    for m in rows:
        for r in rows[m]:
            annotated.setdefault(r.filename, set()).add(r.label)
    unannotated = [v for v in val_test if weak.classes_of(v) - annotated.get(v, set())]
    assert len(unannotated) == 32


def test_custom_files_and_clear_errors(tmp_path):
    audio = tmp_path / "a.csv"
    visual = tmp_path / "v.csv"
    vid = llp.split_ids("test")[0]
    audio.write_text(f"filename\tonset\toffset\tevent_labels\n{vid}\t2\t5\tDog\nnot_a_video\t0\t3\tDog\n")
    visual.write_text(f"filename\tonset\toffset\tevent_labels\n{vid}\t0\t10\tSpeech\n")
    ann = llp.read_eval_annotations((audio, visual))
    ga, gv = ann.video_matrices(vid)
    assert ga[CLASS_INDEX["Dog"]].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert gv[CLASS_INDEX["Speech"]].sum() == 10 and ga.sum() == 3 and gv.sum() == 10
    assert [r.filename for r in ann.orphan_rows] == ["not_a_video"]

    bad_class = tmp_path / "bad.csv"
    bad_class.write_text(f"filename\tonset\toffset\tevent_labels\n{vid}\t0\t1\tUnicorn\n")
    with pytest.raises(llp.LLPFormatError, match=r"line 2: unknown class 'Unicorn'"):
        llp.read_eval_annotations((bad_class, visual))
    bad_range = tmp_path / "range.csv"
    bad_range.write_text(f"filename\tonset\toffset\tevent_labels\n{vid}\t-1\t3\tDog\n")
    with pytest.raises(llp.LLPFormatError, match="outside"):
        llp.read_eval_annotations((bad_range, visual))
    comma = tmp_path / "comma.csv"
    comma.write_text("filename,onset,offset,event_labels\n")
    with pytest.raises(llp.LLPFormatError, match="header"):
        llp.read_eval_annotations((comma, visual))
    weak = tmp_path / "weak.csv"
    weak.write_text("filename\tevent_labels\nx_0_10\tDog,Cat\ny_0_10\tSpeech\n")
    labels = llp.read_weak_labels(weak)
    assert labels.ids == ("x_0_10", "y_0_10") and labels.as_sets()["x_0_10"] == {"Dog", "Cat"}
    weak.write_text("filename\tevent_labels\nx_0_10\tDog, Cat\n")
    with pytest.raises(llp.LLPFormatError, match="unknown class ' Cat'"):
        llp.read_weak_labels(weak)
    with pytest.raises(ValueError, match="unknown LLP split"):
        llp.read_weak_labels("training")
    with pytest.raises(ValueError, match="unknown annotation version"):
        llp.read_eval_annotations("2019")
    with pytest.raises(KeyError, match="no eval annotations"):
        llp.read_eval_annotations("2024").ground_truth(["BjCEufrlXm4_20_30"])
