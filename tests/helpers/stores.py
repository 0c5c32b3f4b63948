"""Small synthetic stores shared by the model tests: features from the backbone declarations, optionally
with the pseudo-label stage run on them (what `avvp-pseudolabel --data STORE` writes)."""
from __future__ import annotations

from pathlib import Path

from avvp.data.synthetic import SyntheticConfig, generate_synthetic
from avvp.extract.backbones import feature_specs
from avvp.pseudolabels.run import PseudoLabelRunConfig, run_pseudolabels

# the VALOR++ inputs at test width: CLAP tokens, CLIP frames, R(2+1)D motion
VALOR_PP_FEATURES = ("clap_tokens", "clip", "r2plus1d")
VALOR_PP_TINY_DIMS = (("clap_tokens", 16), ("clip", 16), ("r2plus1d", 8))


def synthetic_store(path: Path, *, features=VALOR_PP_FEATURES, dims=VALOR_PP_TINY_DIMS, num_train: int = 24,
                    num_val: int = 8, num_test: int = 8, seed: int = 0, pseudolabels: bool = True) -> Path:
    syn = SyntheticConfig(num_train=num_train, num_val=num_val, num_test=num_test, features=tuple(features),
                          dims=tuple(dims), seed=seed)
    generate_synthetic(path, syn, feature_specs(syn.features))
    if pseudolabels:
        run_pseudolabels(PseudoLabelRunConfig(Path(path)), echo=lambda line: None)
    return Path(path)
