"""Trainer: schedules, config round trip, selection on val only, bit-exact resume, outputs, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avvp.cli.train import main as train_main
from avvp.data.predictions import read_predictions
from avvp.data.store import Store, StoreWriter
from avvp.data.synthetic import VALOR_CLAP_THRESHOLDS, VALOR_CLIP_THRESHOLDS, SyntheticConfig, generate_synthetic
from avvp.extract.backbones import feature_specs
from avvp.metrics import LevelResult, MetricResult
from avvp.train.config import ExperimentConfig, apply_override, dump_config, load_config, preset
from avvp.train.data import TrainingData, parse_visual_arg
from avvp.train.checkpoint import Checkpoint
from avvp.train.loop import Trainer, load_model, lr_at

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TINY_DIMS = (("vggish", 12), ("clap", 12), ("clap_tokens", 8), ("resnet152", 16), ("r2plus1d", 8), ("clip", 12))
TINY_HAN = ["--set", "model.options.hidden=16", "--set", "model.options.ff=16"]


def write_valor_pseudo(path: Path) -> None:
    """VALOR's rule computed here, independently of avvp.pseudolabels: weak[c] and logit[t,c] > thr[c]."""
    with Store(path) as s:
        ids, weak = list(s.ids), s.read("labels/weak")
        pa = ((weak[:, None] > 0) & (s.read("zeroshot/clap") > np.array(VALOR_CLAP_THRESHOLDS))).astype(np.uint8)
        pv = ((weak[:, None] > 0) & (s.read("zeroshot/clip") > np.array(VALOR_CLIP_THRESHOLDS))).astype(np.uint8)
    with StoreWriter(path) as w:
        w.set_rows("pseudo/audio", ids, pa)
        w.set_rows("pseudo/visual", ids, pv)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("train") / "tiny.h5"
    syn = SyntheticConfig(num_train=40, num_val=12, num_test=12, dims=TINY_DIMS, features=tuple(n for n, _ in TINY_DIMS))
    generate_synthetic(path, syn, feature_specs(syn.features))
    write_valor_pseudo(path)
    return path


@pytest.fixture(scope="module")
def weak_only_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weak") / "weak.h5"
    syn = SyntheticConfig(num_train=16, num_val=8, num_test=8, dims=TINY_DIMS, features=("vggish", "resnet152", "r2plus1d"))
    generate_synthetic(path, syn, feature_specs(syn.features))
    return path


def tiny_cfg(store: Path, out: Path, name: str = "han", epochs: int = 3) -> ExperimentConfig:
    cfg = preset(name)
    cfg.data.store, cfg.train.out, cfg.optim.epochs, cfg.train.progress = str(store), str(out), epochs, False
    cfg.optim.batch_size = 8
    cfg.model.options.update({"hidden": 16, "ff": 16} if name != "mmpyr" else {"hidden": 16, "ffn": 16, "levels": 2})
    if cfg.model.options.get("heads", 1) > 1:
        cfg.model.options["heads"] = 2
    return cfg


# ---------------------------------------------------------------------------------------- schedules
def test_warmup_cosine_values_hand_computed():
    o = preset("valor").optim  # lr_max 1e-4, lr_min 1e-6, warm-up 10, 60 epochs
    assert lr_at(1, o) == pytest.approx(1e-5, rel=1e-12)  # 1/10 * 1e-4
    assert lr_at(5, o) == pytest.approx(5e-5, rel=1e-12)
    assert lr_at(10, o) == pytest.approx(1e-4, rel=1e-12)  # cos(0) = 1 → lr_max
    # 1e-6 + 0.5 * 9.9e-5 * (1 + cos(pi/50)), cos(pi/50) = 0.99802672842827156
    assert lr_at(11, o) == pytest.approx(9.990232305720e-05, rel=1e-10)
    assert lr_at(35, o) == pytest.approx(1e-6 + 0.5 * 9.9e-5, rel=1e-12)  # cos(pi/2) = 0
    assert lr_at(60, o) == pytest.approx(1e-6, rel=1e-9)  # cos(pi) = -1 → lr_min


def test_steplr_matches_the_official_han_schedule():
    o = preset("han").optim
    got = [lr_at(e, o) for e in range(1, 41)]
    assert got[:10] == [3e-4] * 10
    assert got[10] == pytest.approx(3e-5) and got[19] == pytest.approx(3e-5) and got[20] == pytest.approx(3e-6)
    # independent: torch's StepLR stepped once after each epoch, as main_avvp.py does
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1)
    ref = []
    for _ in range(40):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_presets_hold_the_paper_settings():
    v = preset("valor++")
    assert (v.data.audio, v.data.visual, v.data.motion, v.data.labels) == ("clap_tokens", "clip", "r2plus1d", "pseudo")
    assert {k: v.model.options[k] for k in ("hidden", "heads", "ff", "layers", "sequential")} == \
        {"hidden": 256, "heads": 8, "ff": 1024, "layers": 4, "sequential": True}
    assert (v.optim.optimizer, v.optim.lr, v.optim.lr_min, v.optim.betas, v.optim.weight_decay, v.optim.grad_clip,
            v.optim.batch_size, v.optim.epochs, v.train.seed, v.train.select) == \
        ("adamw", 3e-4, 3e-6, (0.5, 0.999), 1e-3, 1.0, 64, 60, 87, ">")
    assert (preset("valor").model.options["hidden"], preset("valor").train.seed) == (512, 1000)
    assert (preset("valor+").model.options["layers"], preset("valor+").train.seed) == (4, 64)
    h = preset("han")
    assert (h.optim.optimizer, h.optim.lr, h.optim.step, h.optim.gamma, h.optim.epochs, h.optim.batch_size,
            h.train.seed, h.train.select) == ("adam", 3e-4, 10, 0.1, 40, 16, 1, ">=")
    assert (preset("mmpyr").optim.lr, preset("ma").optim.epochs, preset("ma").train.select) == (1e-4, 12, "last")


# ------------------------------------------------------------------------------------------- config
def test_config_yaml_round_trip_and_overrides(tmp_path):
    cfg = preset("valor++")
    cfg = apply_override(cfg, "optim.lr=1e-4")
    cfg = apply_override(cfg, "optim.betas=[0.6, 0.99]")
    cfg = apply_override(cfg, "model.options.layers=2")
    cfg = apply_override(cfg, "data.motion=null")
    cfg = apply_override(cfg, "optim.epochs=7")
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float) and cfg.optim.betas == (0.6, 0.99)
    assert cfg.model.options["layers"] == 2 and cfg.data.motion is None and cfg.optim.epochs == 7
    back = load_config(dump_config(cfg, tmp_path / "config.yaml"))
    assert back == cfg
    with pytest.raises(ValueError, match="unknown key 'optim.lrr'"):
        apply_override(cfg, "optim.lrr=1")
    with pytest.raises(ValueError, match="expects true/false"):
        apply_override(cfg, "train.deterministic=3")
    assert parse_visual_arg("clip,r2plus1d") == ("clip", "r2plus1d")
    assert parse_visual_arg("resnet152") == ("resnet152", None)


# ---------------------------------------------------------------------------------------- selection
def _fake_result(value: float) -> MetricResult:
    lv = LevelResult(value, value, value, value, value)
    return MetricResult(lv, lv, value, 1)


@pytest.mark.parametrize("rule,val,expected_epoch", [(">=", [10, 30, 30, 20], 3), (">", [10, 30, 30, 20], 2),
                                                       ("last", [10, 30, 30, 20], 4)])
def test_best_checkpoint_is_chosen_on_val_only(store, tmp_path, monkeypatch, rule, val, expected_epoch):
    test_values = [90, 10, 5, 95]  # test disagrees with val everywhere
    calls = {"val": 0, "test": 0}

    def scripted(self, split, pred):
        i = calls[split.name]
        calls[split.name] += 1
        if split.name == "test":
            return _fake_result(-1.0)  # only read at the end, from best.pt
        return _fake_result(val[i] if i < len(val) else -1.0)

    monkeypatch.setattr(Trainer, "score", scripted)
    cfg = tiny_cfg(store, tmp_path / "run", epochs=4)
    cfg.train.select = rule
    result = Trainer(cfg).fit()
    assert result.best_epoch == expected_epoch
    assert calls["test"] == 1  # the test split is scored once, after training
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val"]["segment"]["type"] for r in lines] == val
    assert all("test" not in r for r in lines) and test_values  # nothing about test during training
    assert Checkpoint.load(tmp_path / "run" / "best.pt").epoch == expected_epoch


# ------------------------------------------------------------------------------------------- resume
def test_resume_gives_bit_identical_final_weights(store, tmp_path, monkeypatch):
    cfg = tiny_cfg(store, tmp_path / "full", name="valor", epochs=4)  # AdamW, clip, cosine, dropout
    cfg.optim.warmup = 2
    Trainer(cfg).fit()
    full = Checkpoint.load(tmp_path / "full" / "last.pt").state_dict

    cfg2 = tiny_cfg(store, tmp_path / "cut", name="valor", epochs=4)
    cfg2.optim.warmup = 2
    original = Trainer.train_epoch

    def killed_at_3(self, model, optimizer, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, model, optimizer, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", killed_at_3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg2).fit()
    monkeypatch.setattr(Trainer, "train_epoch", original)
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(cfg2).fit()
    Trainer(cfg2).fit(resume=True)
    resumed = Checkpoint.load(tmp_path / "cut" / "last.pt").state_dict
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    a = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    b = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]  # noqa: E731
    assert strip(a) == strip(b)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_end_to_end_writes_readable_outputs(store, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = train_main(["--model", "han", "--data", str(store), "--out", str(out), "--epochs", "2", *TINY_HAN])
    assert rc == 0
    for name in ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "metrics_final.json",
                 "predictions_val.h5", "predictions_test.h5"):
        assert (out / name).exists(), name
    with Store(store) as s:
        test_ids = [str(v) for v in s.split_ids("test")]
    pred = read_predictions(out / "predictions_test.h5")
    assert list(pred.ids) == test_ids and pred.audio.shape == (12, 10, 25) and pred.audio_video is not None
    final = json.loads((out / "metrics_final.json").read_text())
    assert set(final["test"]["segment"]) == {"audio", "visual", "audio_visual", "type", "event"}
    assert "test seg" in capsys.readouterr().out
    # best.pt alone rebuilds the model and reproduces the written predictions
    model, ckpt = load_model(out / "best.pt")
    assert ckpt.features == {"audio": "vggish", "visual": "resnet152", "motion": "r2plus1d"}
    assert len(ckpt.classes) == 25 and ckpt.config["model"]["name"] == "han"
    data = TrainingData(load_config(out / "config.yaml").data, splits=("test",))
    with torch.no_grad():
        o = model(data["test"].batch(torch.arange(12)))
    np.testing.assert_allclose(o.audio_seg.numpy(), pred.audio, atol=1e-6)


def test_cli_valor_pp_tokens_and_clip_without_motion(store, tmp_path):
    rc = train_main(["--preset", "valor++", "--data", str(store), "--out", str(tmp_path / "v"), "--epochs", "1",
                     "--visual", "clip,none", "--batch-size", "8", "--no-progress",
                     "--set", "model.options.hidden=16", "--set", "model.options.heads=2",
                     "--set", "model.options.ff=16", "--set", "model.options.layers=2"])
    assert rc == 0
    ckpt = Checkpoint.load(tmp_path / "v" / "best.pt")
    assert ckpt.input_dims.audio == (64, 8) and ckpt.input_dims.motion is None
    # the layouts the store records (declared by the backbones) reach the checkpoint and the rebuilt model
    assert dict(ckpt.input_dims.layouts) == {"audio": "tokens", "visual": "segments"}
    model, _ = load_model(tmp_path / "v" / "best.pt")
    assert model.projection.audio_tokens


def test_training_dims_carry_the_recorded_layouts(store, tmp_path):
    """The trainer reads each feature's `layout` attribute (stores without one fall back to the length
    rule: tests/models/test_models.py)."""
    cfg = tiny_cfg(store, tmp_path)
    cfg.data.audio, cfg.data.visual, cfg.data.motion = "clap_tokens", "resnet152", "r2plus1d"
    dims = TrainingData(cfg.data, splits=("test",)).dims
    assert dict(dims.layouts) == {"audio": "tokens", "visual": "frames", "motion": "segments"}


def test_cli_pseudo_labels_missing_names_the_command(weak_only_store, tmp_path, capsys):
    rc = train_main(["--preset", "valor", "--data", str(weak_only_store), "--out", str(tmp_path / "x"),
                     "--epochs", "1", "--no-progress"])
    assert rc == 2
    assert "avvp-pseudolabel" in capsys.readouterr().err


def test_ma_three_stages_write_refined_labels(tmp_path):
    path = tmp_path / "ma.h5"
    syn = SyntheticConfig(num_train=24, num_val=8, num_test=8, dims=TINY_DIMS, features=("vggish", "resnet152", "r2plus1d"))
    generate_synthetic(path, syn, feature_specs(syn.features))
    rc = train_main(["--model", "ma", "--data", str(path), "--out", str(tmp_path / "ma"), "--epochs", "1",
                     "--no-progress", *TINY_HAN])
    assert rc == 0
    with Store(path) as s:
        train_ids = list(s.split_ids("train"))
        weak = s.read("labels/weak", train_ids)
        ra, rv = s.read("labels/refined_audio", train_ids), s.read("labels/refined_visual", train_ids)
    assert ra.dtype == np.uint8 and ra.shape == weak.shape
    assert np.all(ra <= weak) and np.all(rv <= weak)  # refinement only removes labels
    assert (tmp_path / "ma" / "stage1" / "best.pt").exists()
    final = json.loads((tmp_path / "ma" / "stage3" / "metrics_final.json").read_text())
    assert final["gate"] == "modality" and final["select"] == "last"
    cfg = load_config(tmp_path / "ma" / "stage3" / "config.yaml")
    assert cfg.data.labels == "refined" and cfg.model.options["stage"] == 3


def test_mmap_mode_serves_the_same_batches(store):
    cfg = preset("valor++").data
    cfg.store = str(store)
    mem = TrainingData(cfg, splits=("train",))["train"]
    cfg.mmap = True
    lazy = TrainingData(cfg, splits=("train",))["train"]
    idx = torch.tensor([5, 0, 17, 3])
    a, b = mem.batch(idx), lazy.batch(idx)
    for field in ("audio", "visual", "motion", "weak", "pseudo_audio", "pseudo_visual"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert a.audio.shape == (4, 64, 8)


# ------------------------------------------------------------------------------------------- curves, loggers
def test_curves_are_redrawn_at_most_every_interval_and_always_with_the_last_epoch(store, tmp_path, monkeypatch):
    from avvp.train import loop

    drawn = []  # metrics.jsonl lines present at each redraw
    monkeypatch.setattr(loop, "plot_curves", lambda metrics, png: drawn.append(len(Path(metrics).read_text().splitlines())))
    Trainer(tiny_cfg(store, tmp_path / "throttled", epochs=3)).fit()
    assert drawn == [1, 3]  # the first epoch, then the end (the 30 s interval never passed)
    drawn.clear()
    monkeypatch.setattr(loop, "CURVES_REDRAW_SECONDS", 0.0)
    Trainer(tiny_cfg(store, tmp_path / "every", epochs=3)).fit()
    assert drawn == [1, 2, 3]


def test_run_writes_curves_png_and_tensorboard_events(store, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_cfg(store, tmp_path / "run", epochs=2)
    cfg.train.logger = "tensorboard"
    Trainer(cfg).fit()
    png = tmp_path / "run" / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    seg_type = [e.value for e in acc.Scalars("val/segment/type")]
    assert [e.step for e in acc.Scalars("val/segment/type")] == [1, 2]
    assert seg_type == pytest.approx([r["val"]["segment"]["type"] for r in lines])
    assert "train/total" in acc.Tags()["scalars"] and "lr" in acc.Tags()["scalars"]


def test_curves_show_every_logged_epoch(tmp_path):
    import matplotlib.image

    from avvp.train.curves import plot_curves

    def record(e, v):
        level = {"audio": v, "visual": v, "audio_visual": v, "type": v, "event": v}
        return {"epoch": e, "lr": 1e-3, "train": {"total": 1.0 / e}, "val": {"segment": level, "event": level, "avg": v},
                "selected": e == 2}

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(record(e, v)) + "\n" for e, v in [(1, 10.0), (2, 60.0), (3, 40.0)]))
    one = matplotlib.image.imread(plot_curves(path, tmp_path / "a.png"))
    path.write_text("".join(json.dumps(record(e, v)) + "\n" for e, v in [(1, 10.0), (2, 60.0), (3, 90.0)]))
    two = matplotlib.image.imread(plot_curves(path, tmp_path / "b.png"))
    assert one.shape == two.shape and (one != two).any()  # the figure is drawn from the metrics lines


def test_unknown_or_missing_logger_fails_before_data_is_read(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path / "does-not-exist.h5", tmp_path / "run")
    cfg.train.logger = "wandb"
    with pytest.raises(ValueError, match="train.logger must be one of"):
        cfg.validate()
    import avvp.train.curves as curves

    def missing():
        raise ValueError("train.logger 'tensorboard' needs the tensorboard package: pip install tensorboard")

    monkeypatch.setattr(curves, "tensorboard_writer_class", missing)
    cfg.train.logger = "tensorboard"
    with pytest.raises(ValueError, match="needs the tensorboard package"):
        cfg.validate()


@pytest.mark.parametrize("argv, message", [
    (["--model", "han", "--set", "model.options.bogus=1"], "unknown HANOptions option(s) ['bogus']"),
    (["--preset", "han", "--model", "nosuch"], "unknown model 'nosuch'"),
    (["--preset", "nosuch"], "unknown preset 'nosuch'"),
    (["--preset", "valor", "--set", "model.options.loss=nosuch"], "unknown MMIL loss 'nosuch'"),
    (["--preset", "cvcms", "--set", "model.options.co_occurrence=nosuch"], "unknown co-occurrence mode 'nosuch'"),
    (["--preset", "mmcse", "--set", "model.options.ort_visual=nosuch"], "ort_visual must be one of"),
])
def test_cli_rejects_bad_model_settings_before_reading_data(tmp_path, capsys, argv, message):
    """A typo in the model, its options or the preset is reported first: the store does not even exist."""
    missing_store, out = tmp_path / "no_such_store.h5", tmp_path / "run"
    assert train_main(argv + ["--data", str(missing_store), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "does not exist" not in err
    assert not out.exists() and not missing_store.exists()
    # the same settings without the typo reach the data (and fail there): the check above came first
    assert train_main(["--preset", "han", "--data", str(missing_store), "--out", str(out), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_label_kinds_are_the_registry(capsys):
    from avvp.cli.train import build_parser
    from avvp.train.labels import LABEL_KINDS

    labels = next(a for a in build_parser()._actions if a.dest == "labels")
    assert list(labels.choices) == LABEL_KINDS.names() == ["pseudo", "refined", "weak"]
