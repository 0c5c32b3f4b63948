"""avvp-train stopped by a real SIGINT/SIGTERM: one line naming last.pt and `--resume`, exit 130/143, and
the resumed run ends with every epoch once."""
from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.helpers.signals import SIGNAL_NAMES, interrupt_when

from avvp import faults
from avvp.cli.train import main as train_main
from avvp.data.synthetic import SyntheticConfig, generate_synthetic
from avvp.extract.backbones import feature_specs
from avvp.train.checkpoint import resume_state

EPOCHS = 8


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("train") / "tiny.h5"
    syn = SyntheticConfig(num_train=32, num_val=8, num_test=8, dims=(("vggish", 12), ("resnet152", 16), ("r2plus1d", 8)),
                          features=("vggish", "resnet152", "r2plus1d"))
    generate_synthetic(path, syn, feature_specs(syn.features))
    return path


def epochs_logged(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    return [json.loads(ln)["epoch"] for ln in path.read_text().splitlines() if ln] if path.exists() else []


# SIGTERM takes the same path as SIGINT (one handler): the slow tier runs it
@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_keeps_last_pt_says_resume_and_resume_finishes(store, tmp_path, sig):
    out = tmp_path / "run"
    args = ["--model", "han", "--data", str(store), "--out", str(out), "--epochs", str(EPOCHS), "--device", "cpu",
            "--no-progress", "--set", "model.options.hidden=16", "--set", "model.options.ff=16", "--set", "train.threads=1"]
    # two epochs logged: last.pt (written right after an epoch's metrics line) holds at least epoch 1
    last, _ = interrupt_when([sys.executable, "-m", "avvp.cli.train", *args], lambda: len(epochs_logged(out)) >= 2, sig)
    m = re.fullmatch(rf"avvp-train: interrupted by {SIGNAL_NAMES[sig]}; {re.escape(str(out / 'last.pt'))} holds epoch (\d+) of {EPOCHS} "
                     r"\(--resume continues with epoch (\d+)\); re-run the same command with --resume to continue", last)
    assert m, last
    epoch = int(m.group(1))
    assert int(m.group(2)) == epoch + 1 and 1 <= epoch < EPOCHS
    assert resume_state(out / "last.pt")["epoch"] == epoch

    assert train_main([*args, "--resume"]) == faults.EXIT_OK
    assert epochs_logged(out) == list(range(1, EPOCHS + 1))  # every epoch once, none lost or repeated
    assert (out / "predictions_test.h5").exists()


def test_interrupted_in_the_first_epoch_resumes_from_epoch_0(store, tmp_path, capsys, monkeypatch):
    """last.pt is written before the first epoch too, so even that interruption can --resume."""
    from avvp.train.loop import Trainer

    out = tmp_path / "run"
    args = ["--model", "han", "--data", str(store), "--out", str(out), "--epochs", "2", "--no-progress",
            "--set", "model.options.hidden=16", "--set", "model.options.ff=16"]
    original = Trainer.train_epoch

    def interrupted(self, model, optimizer, epoch):
        raise faults.Interrupted(signal.SIGINT)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    assert train_main(args) == faults.EXIT_SIGINT
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"avvp-train: interrupted by SIGINT; {out / 'last.pt'} holds epoch 0 of 2 (--resume continues with epoch 1); "
        "re-run the same command with --resume to continue")
    monkeypatch.setattr(Trainer, "train_epoch", original)
    assert train_main([*args, "--resume"]) == faults.EXIT_OK
    assert epochs_logged(out) == [1, 2]


def test_an_unreadable_store_is_one_line_for_train_and_eval(tmp_path, capsys):
    from avvp.cli.eval import main as eval_main

    bad = tmp_path / "data.h5"
    bad.write_bytes(b"\0" * 4096)
    assert train_main(["--model", "han", "--data", str(bad), "--out", str(tmp_path / "run")]) == faults.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"avvp-train: error: cannot read store {bad}: "), err
    from avvp.data.predictions import write_predictions
    import numpy as np

    pred = tmp_path / "pred.h5"
    write_predictions(pred, ["a"], np.zeros((1, 10, 25), np.float32), np.zeros((1, 10, 25), np.float32),
                      np.zeros((1, 25), np.float32))
    assert eval_main(["--pred", str(pred), "--data", str(bad), "--split", "test"]) == faults.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"avvp-eval: error: cannot read store {bad}: "), err
