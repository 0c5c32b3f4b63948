"""The predictions file format (avvp.data.predictions): round trip, the documented layout, atomic writes,
selection and validation errors."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from avvp.data.classes import LLP_CLASSES
from avvp.data.predictions import (
    MissingVideosError,
    Predictions,
    PredictionsError,
    read_predictions,
    write_predictions,
)


def test_predictions_roundtrip_and_atomic_write(tmp_path):
    rng = np.random.default_rng(0)
    n = 4
    audio, visual = rng.random((n, 10, 25)), rng.random((n, 10, 25))
    video, a_video = rng.random((n, 25)), rng.random((n, 25))
    path = tmp_path / "p.h5"
    write_predictions(path, ["a", "b", "c", "d"], audio, visual, video, audio_video=a_video,
                      attrs={"model": "han", "epoch": 7})
    assert not (tmp_path / "p.h5.tmp").exists()
    pred = read_predictions(path)
    assert pred.ids == ("a", "b", "c", "d") and pred.classes == LLP_CLASSES
    assert pred.audio.dtype == np.float32 and np.array_equal(pred.audio, audio.astype(np.float32))
    assert np.array_equal(pred.audio_video, a_video.astype(np.float32)) and pred.visual_video is None
    assert pred.model == "han" and pred.attrs["epoch"] == 7 and pred.attrs["avvp_version"]
    with h5py.File(path) as f:  # the documented layout
        assert f["videos/id"].asstr()[()].tolist() == ["a", "b", "c", "d"]
        assert f["pred/visual"].shape == (4, 10, 25) and f["pred/video"].shape == (4, 25)
        assert f.attrs["format"] == "avvp-predictions"
    sel = pred.select(["c", "a"])
    assert sel.ids == ("c", "a") and np.array_equal(sel.video, pred.video[[2, 0]])
    with pytest.raises(MissingVideosError, match="lacks 2 of 3 requested videos: x, y"):
        pred.select(["a", "x", "y"])
    # a failed write leaves the previous file intact and no temporary file behind
    with pytest.raises(PredictionsError):
        write_predictions(path, ["a"], audio[:1], visual[:1], video[:2])
    assert read_predictions(path).ids == ("a", "b", "c", "d") and not (tmp_path / "p.h5.tmp").exists()


def test_predictions_validation_errors(tmp_path):
    ok = dict(audio=np.zeros((2, 10, 25), np.float32), visual=np.zeros((2, 10, 25), np.float32),
              video=np.zeros((2, 25), np.float32))
    with pytest.raises(PredictionsError, match=r"visual: expected shape \(2, 10, 25\)"):
        Predictions(ids=("a", "b"), **(ok | {"visual": np.zeros((2, 25, 10), np.float32)}))
    with pytest.raises(PredictionsError, match="not unique"):
        Predictions(ids=("a", "a"), **ok)
    with pytest.raises(PredictionsError, match="not probabilities"):
        Predictions(ids=("a", "b"), **(ok | {"video": np.full((2, 25), np.nan, np.float32)}))
    with pytest.raises(PredictionsError, match="floating-point"):
        Predictions(ids=("a", "b"), **(ok | {"video": np.zeros((2, 25), np.int64)}))
    with pytest.raises(PredictionsError, match="set by write_predictions"):
        write_predictions(tmp_path / "x.h5", ["a", "b"], attrs={"classes": "x"}, **ok)
    not_ours = tmp_path / "other.h5"
    with h5py.File(not_ours, "w") as f:
        f["x"] = 1
    with pytest.raises(PredictionsError, match="not an avvp predictions file"):
        read_predictions(not_ours)
