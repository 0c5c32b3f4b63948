"""The fidelity tier (`make test-fidelity`): avvp's backbones against the official implementations run
themselves (laion_clap's own calls with torchaudio, transformers' CLIPModel, the TF-slim VGGish graph,
pretrainedmodels' ResNet-152, the AVVP script's R(2+1)D call), with the same weights and the same decoded
inputs. Its packages are not in avvp's venv: `tools/setup_fidelity_env.sh` builds them and the make target
sets AVVP_FIDELITY=1, PYTHONPATH and AVVP_TF_PYTHON. Without AVVP_FIDELITY=1 (plain `make test`) these files
are not collected; with it, a missing package is an error, never a skip.

Each test records (backbone, output, official call, max relative difference = max|avvp - official| /
max|official|); the table is printed at the end of the run and written to $AVVP_FIDELITY_REPORT
(default .fidelity/report.md) for docs/backbones.md.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ENABLED = os.environ.get("AVVP_FIDELITY") == "1"
if not ENABLED:
    collect_ignore_glob = ["test_*.py"]

TOLERANCE = 1e-5
_ROWS: list[tuple[str, str, str, float]] = []


def max_rel_diff(ours, official) -> float:
    ours, official = np.asarray(ours, np.float64), np.asarray(official, np.float64)
    assert ours.shape == official.shape, (ours.shape, official.shape)
    return float(np.abs(ours - official).max() / np.abs(official).max())


@pytest.fixture(scope="session")
def record():
    """record(backbone, output, official_call, ours, official) -> the max relative diff (asserted <= 1e-5)."""

    def _record(backbone: str, output: str, call: str, ours, official) -> float:
        diff = max_rel_diff(ours, official)
        _ROWS.append((backbone, output, call, diff))
        assert diff <= TOLERANCE, f"{backbone} {output}: max relative diff {diff:.2e} > {TOLERANCE:g} vs {call}"
        return diff

    return _record


def report_table() -> str:
    lines = ["| backbone | output | official call | max rel diff |", "|---|---|---|---|"]
    lines += [f"| {b} | {o} | {c} | {d:.1e} |" for b, o, c, d in _ROWS]
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    terminalreporter.write_sep("=", "fidelity: avvp vs the official implementations (same weights, same inputs)")
    terminalreporter.write_line(report_table())
    path = Path(os.environ.get("AVVP_FIDELITY_REPORT", ".fidelity/report.md"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report_table())
        terminalreporter.write_line(f"(table written to {path})")
    except OSError as exc:
        terminalreporter.write_line(f"(table not written to {path}: {exc})")


@pytest.fixture(scope="session")
def reference_video(tmp_path_factory):
    """A generated 10 s clip (h264 320x240 25 fps, AAC 44.1 kHz pink noise) decoded by avvp's reference
    profile: the 80 frames, VALOR's 10 segment frames, the 16 kHz and 48 kHz tracks the official scripts see."""
    from avvp.extract.decode import decode_video
    from tests.helpers.media import make_clip

    path = make_clip(tmp_path_factory.mktemp("fidelity") / "clip.mp4", seconds=10, size=(320, 240), audio_pattern="noise")
    video = decode_video(path, profile="reference")
    assert video.has_audio and video.frames.shape[0] == 80
    return video
