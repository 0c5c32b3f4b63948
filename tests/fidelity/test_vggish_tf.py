"""VGGish: avvp's backbone vs the TF-slim graph of vggish_slim.py, both fc2 variants, with the weights of a
generated TF checkpoint (V1, as the release) converted by `avvp-convert-weights vggish`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from avvp.extract.backbones import BACKBONES, BackboneConfig

HERE = Path(__file__).parent
TF_PYTHON = os.environ.get("AVVP_TF_PYTHON", ".fidelity/tf/bin/python")


def test_vggish_matches_tf_slim_graph(reference_video, record, tmp_path):
    assert Path(TF_PYTHON).exists(), f"no TensorFlow venv at {TF_PYTHON} (make test-fidelity builds it)"
    inputs = BACKBONES.get("vggish")(BackboneConfig(weights="none")).network_inputs(reference_video)["log_mel"]
    np.save(tmp_path / "examples.npy", inputs)
    ckpt = tmp_path / "vggish_model.ckpt"
    run = subprocess.run([TF_PYTHON, str(HERE / "tf_vggish_official.py"), str(ckpt), str(tmp_path / "examples.npy"),
                          str(tmp_path), "7"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert ckpt.is_file()  # one V1 file, like the release's vggish_model.ckpt

    rng = np.random.default_rng(1)
    eigen, _ = np.linalg.qr(rng.standard_normal((128, 128)))
    np.savez(tmp_path / "vggish_pca_params.npz", pca_eigen_vectors=eigen, pca_means=rng.standard_normal(128))
    out = tmp_path / "converted"
    conv = subprocess.run([sys.executable, "-m", "avvp.cli.convert_weights", "vggish", "--tf-checkpoint", str(ckpt),
                           "--pca", str(tmp_path / "vggish_pca_params.npz"), "--out", str(out),
                           "--tf-python", TF_PYTHON], capture_output=True, text=True)
    assert conv.returncode == 0, conv.stderr[-3000:]

    for final_relu, name in ((True, "relu"), (False, "linear")):
        official = np.load(tmp_path / f"embedding_fc2_{name}.npy")
        backbone = BACKBONES.get("vggish")(BackboneConfig(weights_dir=str(out),
                                                          options=(("final_relu", final_relu),)))
        assert "converted by avvp-convert-weights from TF checkpoint vggish_model.ckpt" in backbone.weights_id()
        ours = backbone.extract_batch([reference_video])[0]["features/vggish"]
        record("vggish", f"features/vggish (fc2 {'ReLU, pre-2020' if final_relu else 'linear, PR #9080'})",
               "TF-slim define_vggish_slim + Saver(V1).restore + sess.run('vggish/embedding')", ours, official)
    # the PCA file: the same parameters as the release's .npz
    from avvp.extract.backbones.vggish import read_pca_params

    got_eigen, got_means = read_pca_params(out / "vggish_pca_params-970ea276.pth")
    np.testing.assert_array_equal(got_eigen, eigen)
    post = BACKBONES.get("vggish")(BackboneConfig(weights_dir=str(out), options=(("postprocess", True),)))
    assert "converted by avvp-convert-weights from PCA parameters vggish_pca_params.npz" in post.weights_id()
