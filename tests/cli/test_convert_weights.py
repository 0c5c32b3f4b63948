"""`avvp-convert-weights vggish` without TensorFlow here: one clear line and exit 2 (the conversion itself,
with a generated TF checkpoint, runs in the fidelity tier: tests/fidelity/test_vggish_tf.py)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from avvp.extract.backbones.vggish import build_vggish_network
from avvp.extract.backbones.vggish_tf import TF_TO_TORCHVGGISH, tf_to_torchvggish


def run(*args):
    return subprocess.run([sys.executable, "-m", "avvp.cli.convert_weights", *args], capture_output=True, text=True)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="tensorflow is installed here")
def test_missing_tensorflow_is_one_line(tmp_path):
    ckpt = tmp_path / "vggish_model.ckpt"
    ckpt.write_bytes(b"not read")
    res = run("vggish", "--tf-checkpoint", str(ckpt), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs TensorFlow" in lines[0] and "--tf-python" in lines[0]


def test_missing_checkpoint(tmp_path):
    res = run("vggish", "--tf-checkpoint", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "no TF checkpoint" in res.stderr


def test_variable_mapping_layouts():
    """TF layouts (HWIO kernels, [in, out] matrices) become torch's, and a strict load accepts them."""
    net = build_vggish_network()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    rng = np.random.default_rng(0)
    variables = {}
    for scope, prefix in TF_TO_TORCHVGGISH.items():
        w = shapes[f"{prefix}.weight"]
        tf_shape = (w[2], w[3], w[1], w[0]) if len(w) == 4 else (w[1], w[0])
        variables[f"{scope}/weights"] = rng.standard_normal(tf_shape).astype(np.float32)
        variables[f"{scope}/biases"] = rng.standard_normal(shapes[f"{prefix}.bias"]).astype(np.float32)
    variables["global_step"] = np.int64(3)  # ignored
    state = tf_to_torchvggish(variables)
    net.load_state_dict(state, strict=True)
    k = variables["vggish/conv2/weights"]  # HWIO
    assert torch.equal(state["features.3.weight"][5, 7], torch.from_numpy(k[:, :, 7, 5]))
    assert torch.equal(state["embeddings.4.weight"], torch.from_numpy(variables["vggish/fc2/weights"].T))
    del variables["vggish/fc2/biases"]
    with pytest.raises(ValueError, match="vggish/fc2"):
        tf_to_torchvggish(variables)
