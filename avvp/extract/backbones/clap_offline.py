"""Building and loading laion_clap's CLAP model without network access.

`laion_clap` (1.1.x) reaches the Hugging Face hub in three places (see docs/backbones.md, "Audio
backbones"):

1. at import, module-level `*Tokenizer.from_pretrained(...)` calls in `laion_clap.training.data`; with
   `HF_HUB_OFFLINE=1` (`avvp._env.offline_defaults`, applied by the console scripts and by `import_laion_clap()`) they return empty tokenizers quickly, without
   it the import retries for ~11 minutes. `import_laion_clap()` refuses to import when the variable is
   missing, rather than stalling;
2. in `CLAP_Module.__init__`: `RobertaModel.from_pretrained('roberta-base')` (raises offline) and
   `RobertaTokenizer.from_pretrained('roberta-base')` (silently empty offline). `offline_roberta()`
   answers both from local objects: a RoBERTa built from a config identical to roberta-base's
   `config.json` (random; every `text_branch.*` weight is then restored from the CLAP checkpoint) and
   the tokenizer the caller supplies;
3. in `CLAP_Module.load_ckpt()` without `ckpt=`: a download. We always pass `ckpt=<local file>`.

`load_ckpt` itself goes through `clap_module.factory.load_state_dict`, which deletes the key
`text_branch.embeddings.position_ids` unconditionally (KeyError when a checkpoint lacks it) because
transformers >= 4.31 no longer keeps it in the state dict. `load_clap_checkpoint()` runs the real
`load_ckpt(ckpt=path)` with a tolerant replacement for that helper: the key is dropped when the model
does not have it and kept (or taken from the model) when it does, and the model's strict
`load_state_dict` still checks every other key.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import sys
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

# roberta-base's config.json (the values that shape the weights and the forward pass)
ROBERTA_BASE_CONFIG: dict[str, Any] = dict(
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=514,
    type_vocab_size=1,
    initializer_range=0.02,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
ROBERTA_VOCAB_SIZE = ROBERTA_BASE_CONFIG["vocab_size"]
POSITION_IDS_KEY = "text_branch.embeddings.position_ids"
TOKENIZER_FILES = ("vocab.json", "merges.txt")


def import_laion_clap():
    """Import laion_clap, refusing to do so when the hub is not in offline mode (the import would
    stall ~11 min on a machine without network). The offline default (`avvp._env.offline_defaults`,
    unless AVVP_ONLINE=1) is applied here for Python API users; it only takes effect if huggingface_hub
    has not been imported yet, which is checked."""
    from avvp._env import offline_defaults, online_requested

    offline_defaults()
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # imported earlier: it read HF_HUB_OFFLINE then, not now
        offline = bool(getattr(hub, "HF_HUB_OFFLINE", False))
    else:
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    if not offline and not online_requested():
        raise RuntimeError(
            "refusing to import laion_clap with the Hugging Face hub online: without network its import-time "
            "tokenizer downloads retry for about 11 minutes. Export HF_HUB_OFFLINE=1 before starting Python "
            "(or AVVP_ONLINE=1 when the hub is reachable)."
        )
    import laion_clap

    return laion_clap


def _bytes_to_unicode() -> list[str]:
    """GPT-2/RoBERTa byte-level alphabet: the 256 printable stand-ins for raw bytes, in byte order."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def byte_level_roberta_tokenizer():
    """A RoBERTa-compatible tokenizer with the 256 byte symbols and no merges.

    Its ids and masks are valid inputs for the text branch (special tokens at roberta's ids 0-3), but
    they are NOT roberta-base's ids: text embeddings computed with it are meaningless. Used only
    with random weights, where nothing is meaningful anyway."""
    from transformers import RobertaTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in _bytes_to_unicode():
        vocab.setdefault(symbol, len(vocab))
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=[])


def has_tokenizer_files(directory: str | os.PathLike | None) -> bool:
    return directory is not None and all((Path(directory) / name).is_file() for name in TOKENIZER_FILES)


def load_roberta_tokenizer(directory: str | os.PathLike):
    """roberta-base's tokenizer from a local directory holding vocab.json and merges.txt."""
    from transformers import RobertaTokenizer

    missing = [name for name in TOKENIZER_FILES if not (Path(directory) / name).is_file()]
    if missing:
        raise FileNotFoundError(f"tokenizer directory {directory} lacks {', '.join(missing)}")
    return RobertaTokenizer(vocab=str(Path(directory) / "vocab.json"), merges=str(Path(directory) / "merges.txt"))


@contextlib.contextmanager
def offline_roberta(tokenizer) -> Iterator[None]:
    """Within the block, `RobertaModel.from_pretrained('roberta-base')` builds a randomly initialised
    roberta-base from its config and `RobertaTokenizer.from_pretrained('roberta-base')` returns
    `tokenizer`; other names go to the real methods. The class attributes are restored on exit."""
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    saved = {cls: cls.__dict__.get("from_pretrained") for cls in (RobertaModel, RobertaTokenizer)}
    real_model_fp, real_tokenizer_fp = RobertaModel.from_pretrained, RobertaTokenizer.from_pretrained

    def model_from_pretrained(name, *args, **kwargs):
        if name == "roberta-base":
            return RobertaModel(RobertaConfig(**ROBERTA_BASE_CONFIG))
        return real_model_fp(name, *args, **kwargs)

    def tokenizer_from_pretrained(name, *args, **kwargs):
        if name == "roberta-base":
            return tokenizer
        return real_tokenizer_fp(name, *args, **kwargs)

    RobertaModel.from_pretrained = staticmethod(model_from_pretrained)
    RobertaTokenizer.from_pretrained = staticmethod(tokenizer_from_pretrained)
    try:
        yield
    finally:
        for cls, attr in saved.items():
            if attr is None:
                delattr(cls, "from_pretrained")
            else:
                cls.from_pretrained = attr


def build_clap_module(tokenizer, *, enable_fusion: bool = True, amodel: str = "HTSAT-tiny", device: str = "cpu"):
    """`laion_clap.CLAP_Module(enable_fusion, amodel, device)` built without network access, in eval
    mode. Weights are random until `load_clap_checkpoint` runs."""
    laion_clap = import_laion_clap()
    with offline_roberta(tokenizer):
        module = laion_clap.CLAP_Module(enable_fusion=enable_fusion, amodel=amodel, device=device)
    module.eval()
    return module


def read_checkpoint_state_dict(path: str | os.PathLike, model_state_keys: set[str]) -> dict[str, Any]:
    """The model state dict of a laion_clap checkpoint file, ready for a strict `load_state_dict`.

    Mirrors `clap_module.factory.load_state_dict(skip_params=True)` (the `state_dict` entry, the
    DataParallel `module.` prefix stripped) except for `position_ids`: dropped only when the model
    has no such entry (transformers >= 4.31 keeps it out of the state dict), and supplied by the
    caller's model when the checkpoint lacks it but the model wants it (older transformers)."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # checkpoints written by the laion training script may pickle more than tensors; laion_clap's
        # own loader uses weights_only=False, so do the same for this user-supplied file
        log.warning("%s holds non-tensor objects; loading it with weights_only=False as laion_clap does", path)
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    from avvp.extract.backbones.weights import unwrap_state_dict

    try:
        state = unwrap_state_dict(checkpoint)
    except ValueError as err:
        raise ValueError(f"{path} holds no state dict ({err})") from None
    if not state:
        raise ValueError(f"{path} holds no state dict")
    if POSITION_IDS_KEY in state and POSITION_IDS_KEY not in model_state_keys:
        del state[POSITION_IDS_KEY]
    return state


def load_clap_checkpoint(module, path: str | os.PathLike) -> None:
    """Load a local laion_clap checkpoint through the library's own `CLAP_Module.load_ckpt(ckpt=path)`
    (so any future change in how it applies the state dict is kept), with its state-dict reader
    replaced by the position_ids-tolerant `read_checkpoint_state_dict` for the duration of the call."""
    import laion_clap.hook as hook

    model_state = module.model.state_dict()
    own_position_ids = model_state.get(POSITION_IDS_KEY)

    def tolerant_load_state_dict(checkpoint_path, map_location="cpu", skip_params=True):
        state = read_checkpoint_state_dict(checkpoint_path, set(model_state))
        if own_position_ids is not None and POSITION_IDS_KEY not in state:
            state[POSITION_IDS_KEY] = own_position_ids
        return state

    real_reader = hook.load_state_dict
    hook.load_state_dict = tolerant_load_state_dict
    chatter = io.StringIO()  # load_ckpt prints progress lines; keep them out of the CLI's stdout
    try:
        with contextlib.redirect_stdout(chatter):
            module.load_ckpt(ckpt=str(path), verbose=False)
    finally:
        hook.load_state_dict = real_reader
    log.debug("laion_clap load_ckpt: %s", chatter.getvalue().strip())
    module.eval()
