"""The demo prints each command generated from the config it runs (avvp.demo.commands): each console
script turns the printed arguments back into an equal config."""
from __future__ import annotations

from avvp.demo.commands import differing_fields, extract_argv, parse_argv, train_argv


def test_extract_command_gives_the_running_config():
    from avvp.cli.extract import build_parser, config_from_args
    from avvp.demo.run import _extraction_config

    for weights, weights_dir in (("random", None), ("pretrained", "/w")):
        cfg = _extraction_config(weights, weights_dir)
        argv = extract_argv(cfg, "videos", "out.h5")
        back = config_from_args(build_parser().parse_args(argv))
        assert back == cfg, differing_fields(back, cfg)
        assert "--profile" in argv and "clip.model=ViT-B-32" in argv and argv[-4:] == ["--executor", "local", "--out", "out.h5"]


def test_train_commands_give_the_running_configs(tmp_path):
    from avvp.cli.train import build_parser, resolve_config
    from avvp.demo.run import PlantedConfig, _han_config
    from avvp.train import apply_override, preset

    planted = _han_config(tmp_path / "train.h5", tmp_path / "run", PlantedConfig(epochs=3, hidden=16))
    valor = preset("valor")
    valor.data.store, valor.train.out, valor.data.labels = str(tmp_path / "s.h5"), str(tmp_path / "v"), "pseudo"
    valor.optim.epochs, valor.train.progress = 12, False
    for o in ("model.options.hidden=128", "optim.lr=0.001", "optim.lr_min=1.0e-05", "model.options.heads=4"):
        valor = apply_override(valor, o)
    for cfg in (planted, valor):
        argv = train_argv(cfg)
        assert resolve_config(build_parser().parse_args(argv)).to_dict() == cfg.to_dict(), argv
    assert "--visual" in train_argv(planted) and "clip,none" in train_argv(planted)


def test_parse_command_gives_the_running_config():
    from avvp.cli.parse import build_parser, config_from_args
    from avvp.parse.run import ParseConfig

    for cfg in (ParseConfig(checkpoint="run/raw_features.pt", out="parse", html=True, device="cpu"),
                ParseConfig(checkpoint="c.pt", weights="random", weights_dir="/w", precision="bf16", profile="clean",
                            gate="none", threshold=0.3, thumbnails=False, accept_feature_mismatch=True,
                            backbone_options=(("clip", (("model", "ViT-B-32"), ("quick_gelu", False))),))):
        argv = parse_argv(cfg, ["a.mp4"])
        back = config_from_args(build_parser().parse_args(argv))
        assert back == cfg, differing_fields(back, cfg)
