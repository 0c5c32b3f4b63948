"""A "missing input" error of the trainer names every way out the project offers (a preset, a flag, a
command), e.g. `--model link` on a store imported from the released features names `link-release`, not
only `avvp-extract --backbone clap` (which needs the videos)."""
from __future__ import annotations

import h5py
import pytest

from avvp.cli.train import main as train_main
from avvp.data.synthetic import SyntheticConfig, generate_synthetic
from avvp.extract.backbones import feature_specs

DIMS = (("clap_tokens", 8), ("clip", 8), ("r2plus1d", 8))


@pytest.fixture(scope="module")
def released_like_store(tmp_path_factory):
    """What `avvp-import --valor` leaves: features and stored pseudo-labels, no zero-shot logits, no text rows."""
    path = tmp_path_factory.mktemp("routes") / "imported.h5"
    syn = SyntheticConfig(num_train=8, num_val=4, num_test=4, dims=DIMS, features=tuple(n for n, _ in DIMS))
    generate_synthetic(path, syn, feature_specs(syn.features))
    with h5py.File(path, "r+") as f:
        for group in ("zeroshot", "text"):
            if group in f:
                del f[group]
    return path


def last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_link_without_zero_shot_logits_names_link_release_extract_and_the_plsim_switch(released_like_store, tmp_path, capsys):
    rc = train_main(["--model", "link", "--data", str(released_like_store), "--out", str(tmp_path / "run"),
                     "--labels", "weak", "--epochs", "1", "--no-progress"])
    line = last_error(capsys)
    assert rc == 2 and line.startswith("avvp-train: error: ")
    for route in ("`avvp-extract --backbone clap`", "`--preset link-release`", "`--set model.options.plsim=false`"):
        assert route in line, (route, line)


def test_missing_pseudo_labels_name_the_command_the_import_and_weak_labels(released_like_store, tmp_path, capsys):
    with h5py.File(released_like_store, "r") as f:
        assert "pseudo" not in f  # the synthetic store has none: as an import of --feats only
    rc = train_main(["--model", "han", "--data", str(released_like_store), "--out", str(tmp_path / "run"), "--labels", "pseudo",
                     "--audio", "clap_tokens", "--visual", "clip,r2plus1d", "--epochs", "1", "--no-progress"])
    line = last_error(capsys)
    assert rc == 2
    for route in ("`avvp-pseudolabel --data <store>`", "`avvp-import --valor", "`--labels weak`"):
        assert route in line, (route, line)


def test_a_missing_feature_names_extract_import_and_the_flag(released_like_store, tmp_path, capsys):
    rc = train_main(["--model", "han", "--data", str(released_like_store), "--out", str(tmp_path / "run"),
                     "--labels", "weak", "--audio", "vggish", "--visual", "clip,r2plus1d", "--epochs", "1",
                     "--no-progress"])
    line = last_error(capsys)
    assert rc == 2 and "has no /features/vggish" in line
    for route in ("`avvp-extract --backbone", "`avvp-import --feats|--valor`", "--audio"):
        assert route in line, (route, line)
