"""The AudioSet release of VGGish (TF-slim checkpoint `vggish_model.ckpt` + `vggish_pca_params.npz`)
converted once into the torchvggish files the `vggish` backbone loads (`avvp-convert-weights vggish`).

The variables of `vggish_slim.define_vggish_slim` (tensorflow/models research/audioset/vggish) and where
they go in the torchvggish layout (`vggish.build_vggish_network`):

    vggish/conv1, conv2, conv3/conv3_1, conv3/conv3_2, conv4/conv4_1, conv4/conv4_2
        -> features.0, 3, 6, 8, 11, 13       weights HWIO -> OIHW (transpose 3, 2, 0, 1), biases as they are
    vggish/fc1/fc1_1, fc1/fc1_2, fc2
        -> embeddings.0, 2, 4                 weights [in, out] -> [out, in]; fc1_1's input order is TF's
                                              NHWC flatten, which the torch module reproduces (no reordering)

Reading a TF checkpoint needs TensorFlow (`tf.train.load_checkpoint` reads the release's V1 file and V2
checkpoints alike). TensorFlow 2.21 requires numpy 2 and cannot live in avvp's environment (laion_clap
pins numpy 1.26), so the reader is this file run as a script by any Python that has TensorFlow
(`--tf-python`); it only needs numpy and tensorflow and writes the variables to an .npz. Nothing here is
needed after the conversion.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


# TF variable scope -> torchvggish module prefix
TF_TO_TORCHVGGISH = {
    "vggish/conv1": "features.0",
    "vggish/conv2": "features.3",
    "vggish/conv3/conv3_1": "features.6",
    "vggish/conv3/conv3_2": "features.8",
    "vggish/conv4/conv4_1": "features.11",
    "vggish/conv4/conv4_2": "features.13",
    "vggish/fc1/fc1_1": "embeddings.0",
    "vggish/fc1/fc1_2": "embeddings.2",
    "vggish/fc2": "embeddings.4",
}
TF_MISSING = ("reading a TF checkpoint needs TensorFlow, which avvp's environment cannot hold (it needs numpy 2); "
              "pass --tf-python PYTHON of an environment with tensorflow (e.g. `python3 -m venv tfenv && "
              "tfenv/bin/pip install tensorflow-cpu`)")


def _dump_with_tensorflow(checkpoint: str, out_npz: str) -> None:
    """(runs in the TensorFlow environment) every variable of `checkpoint` into `out_npz`."""
    import numpy as np
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint)
    arrays = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    np.savez(out_npz, **{name.replace("/", "|"): value for name, value in arrays.items()})


def read_tf_checkpoint(checkpoint: str | Path, tf_python: str | None, workdir: Path) -> dict:
    """{variable name: numpy array} of a TF checkpoint, read in this process when TensorFlow imports here,
    else by `tf_python` running this file; RuntimeError with the one-line reason otherwise."""
    import numpy as np

    out = workdir / "tf_variables.npz"
    if tf_python:
        run = subprocess.run([tf_python, os.path.abspath(__file__), str(checkpoint), str(out)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            tail = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"{tf_python} could not read {checkpoint}: {tail}")
    else:
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            raise RuntimeError(TF_MISSING) from None
        _dump_with_tensorflow(str(checkpoint), str(out))
    with np.load(out) as data:
        return {name.replace("|", "/"): data[name] for name in data.files}


def tf_to_torchvggish(variables: dict) -> dict:
    """The torchvggish state dict (torch tensors) of the VGGish variables; ValueError naming missing ones.
    Variables outside `vggish/` (a global step, optimiser slots) are ignored."""
    import numpy as np
    import torch

    state = {}
    missing = []
    for scope, prefix in TF_TO_TORCHVGGISH.items():
        weights, biases = variables.get(f"{scope}/weights"), variables.get(f"{scope}/biases")
        if weights is None or biases is None:
            missing.append(scope)
            continue
        weights = np.asarray(weights, dtype=np.float32)
        weights = weights.transpose(3, 2, 0, 1) if weights.ndim == 4 else weights.T
        state[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(weights))
        state[f"{prefix}.bias"] = torch.from_numpy(np.asarray(biases, dtype=np.float32).copy())
    if missing:
        raise ValueError(f"not a VGGish checkpoint: no weights/biases for {', '.join(missing)}")
    return state


def checkpoint_files(checkpoint: Path) -> list[Path]:
    """The files of a checkpoint prefix: the V1 file itself, or V2's .index + .data-*."""
    if checkpoint.is_file():
        return [checkpoint]
    return sorted(checkpoint.parent.glob(checkpoint.name + ".*"))


def convert_vggish_release(tf_checkpoint: str | Path, pca: str | Path | None, out_dir: str | Path,
                           tf_python: str | None = None) -> dict[str, Path]:
    """Write `vggish-10086976.pth` (and `vggish_pca_params-970ea276.pth` from the .npz) into `out_dir`,
    with `avvp-converted.json` naming their sources; returns {role: path}. The network file is checked by
    a strict load into avvp's VGGish module before it is written."""
    import tempfile

    import torch

    from avvp._files import sha256_file  # lazy: this file also runs as a script in the TensorFlow venv
    from avvp.extract.backbones.vggish import (
        PROVENANCE_FILE, VGGISH_PCA, VGGISH_TORCHVGGISH, build_vggish_network, read_pca_params,
    )

    tf_checkpoint = Path(tf_checkpoint)
    files = checkpoint_files(tf_checkpoint)
    if not files:
        raise FileNotFoundError(f"no TF checkpoint at {tf_checkpoint} (neither the file nor {tf_checkpoint.name}.index)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        state = tf_to_torchvggish(read_tf_checkpoint(tf_checkpoint, tf_python, Path(tmp)))
    build_vggish_network().load_state_dict(state, strict=True)
    written = {"network": out_dir / VGGISH_TORCHVGGISH.filename}
    torch.save(state, written["network"])
    sources = {written["network"].name: {"kind": "TF checkpoint", "source": str(tf_checkpoint.resolve()),
                                         "sha256": {f.name: sha256_file(f) for f in files}}}
    if pca is not None:
        eigen, means = read_pca_params(pca)  # checks the shapes
        written["pca"] = out_dir / VGGISH_PCA.filename
        torch.save({"pca_eigen_vectors": torch.from_numpy(eigen), "pca_means": torch.from_numpy(means)}, written["pca"])
        sources[written["pca"].name] = {"kind": "PCA parameters", "source": str(Path(pca).resolve()),
                                        "sha256": {Path(pca).name: sha256_file(Path(pca))}}
    (out_dir / PROVENANCE_FILE).write_text(json.dumps(sources, indent=1) + "\n")
    return written


if __name__ == "__main__":  # the TensorFlow side: python vggish_tf.py CHECKPOINT OUT.npz
    if len(sys.argv) != 3:
        sys.exit("usage: vggish_tf.py TF_CHECKPOINT OUT.npz")
    _dump_with_tensorflow(sys.argv[1], sys.argv[2])
