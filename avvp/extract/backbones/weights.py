"""Shared helpers for backbone implementations: where weights come from, and how a model runs.

Every backbone (visual and audio) uses this module the same way, so the three weight modes behave
identically everywhere:

1. Describe the published weights once, as a `WeightsSpec` (torchvision-style: the weights carry
   their own identity, download location, canonical file name and preprocessing constants):

       RESNET152_IMAGENET1K_V1 = WeightsSpec(
           backbone="resnet152", weights_name="torchvision:ResNet152_Weights.IMAGENET1K_V1",
           filename="resnet152-394f9c45.pth",
           url="https://download.pytorch.org/models/resnet152-394f9c45.pth",
           cache="torch_hub", sha256_prefix="394f9c45", preprocessing={...})

2. `Backbone.__init__` (base.py) does the rest for every backbone: `check_weights_mode(config)`, the
   typed options (unknown option names are errors, not silently ignored), then either
   `announce_random_weights(name)` (weights == "random": a one-line notice on stderr, never silent)
   or `resolve_weights_file(spec, config.weights_dir)` (weights == "pretrained"):
   - with `weights_dir`: the file must be `<weights_dir>/<spec.filename>` (or one of
     `spec.alt_filenames`); anything else raises `WeightsUnavailable`.
   - without: the library's standard cache (`cache="torch_hub"`: `$TORCH_HOME/hub/checkpoints/`,
     `cache="hf_hub"`: `$HF_HOME/hub` via huggingface_hub). When the file is not cached it is
     downloaded only if downloads are allowed (`AVVP_ONLINE=1`, see `avvp._env`); otherwise
     `WeightsUnavailable` is raised. Its message names the exact file, the URL, where to put the file,
     and the `--weights-dir` / `--weights random` / `AVVP_ONLINE=1` options. There is no silent
     fallback to random weights.
   The result (`ResolvedWeights`) holds the path and a `weights_id` for the store attributes. When the
   published file name carries a SHA-256 prefix (torchvision does this), the file is hashed; a
   mismatch does not stop loading (a user may legitimately re-serialise weights) but it is announced on
   stderr and recorded in `weights_id`, so stored features always say what produced them.

3. Load with `load_state_dict_file(path)` (torch pickles with `weights_only=True`, or .safetensors)
   and the model's own `load_state_dict(..., strict=True)` (`Backbone.load_weights`' default).

4. Random initialisation is seeded (`seeded_init(seed)`), so every worker of a distributed run builds
   the same random network and their features are comparable.

Execution helpers shared by all backbones: `torch_device(config)`, `autocast_for(config, device)`
(the numeric mode of a forward pass, see "Precision" below) and `chunked(n, size)`.

Precision (`--precision`, recorded as the `precision` attribute of every stored array):
- "fp32" (the default on every device): plain fp32, no autocast; TF32 is switched off for the forward on
  CUDA (`torch.backends.cuda.matmul.allow_tf32`, `torch.backends.cudnn.allow_tf32`), so GPU features are
  fp32 numbers like the reference's, not TF32's 10-bit-mantissa products.
- "bf16" / "fp16": `torch.autocast` to that dtype on the backbone's device (CPU or CUDA), only when asked.
  On a CPU without bf16 units (no `amx_bf16` / `avx512_bf16` in /proc/cpuinfo) bf16 is emulated and
  slower than fp32: a notice says so once (`precision_notice`). There is no "auto": a mode that changes
  the numbers with the device would make the store's values depend on where they were computed.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, TextIO

from avvp._files import sha256_file

if TYPE_CHECKING:  # the config is only an annotation here
    from avvp.extract.backbones.config import BackboneConfig

WEIGHT_MODES = ("pretrained", "random", "none")  # "none": preprocessing only (network_inputs), never a forward
PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_PRECISION = "fp32"
# Downloads are opt-in: avvp/_env.py puts the hub libraries offline unless AVVP_ONLINE=1.
ONLINE_ENV = "AVVP_ONLINE"


class WeightsUnavailable(RuntimeError):
    """Pretrained weights cannot be found offline; the message names the file and where to put it."""


@dataclass(frozen=True)
class WeightsSpec:
    """One published set of pretrained weights and everything needed to find and use them."""

    backbone: str  # registry name of the backbone using them, for messages
    weights_name: str  # stable identity stored as the `weights` attribute, e.g. "torchvision:..."
    filename: str  # canonical file name expected under --weights-dir and in the cache
    url: str = ""  # where a human (or the library when online) downloads the file
    cache: str = "torch_hub"  # "torch_hub" | "hf_hub" | "package" | "none" (weights_dir only)
    sha256_prefix: str = ""  # leading hex digits of the file's SHA-256, when published
    alt_filenames: tuple[str, ...] = ()  # other accepted names (e.g. an older re-serialisation)
    hf_repo: str = ""  # for cache="hf_hub": repository id
    hf_filenames: tuple[str, ...] = ()  # for cache="hf_hub": files tried in order in that repository
    package: str = ""  # for cache="package": the Python package whose directory is the cache (laion_clap's)
    preprocessing: Mapping[str, Any] = field(default_factory=dict)  # mean/std/size..., stored as attrs


@dataclass(frozen=True)
class InputRecipe:
    """How one input profile prepares a backbone's network input, declared next to the weights.

    `source` names the official code the profile reproduces (or "avvp clean"); `steps` lists the
    operations in order. `describe()` is stored as the `input_recipe` attribute of every array."""

    source: str
    steps: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.source}: " + " -> ".join(self.steps)


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file that exists on disk, and how it should be described in the store."""

    path: Path
    weights_id: str
    source: str  # "weights_dir" | "cache" | "download"
    sha256_verified: bool | None  # None when the spec publishes no hash


def downloads_allowed() -> bool:
    """True when the user opted in to network downloads (`AVVP_ONLINE=1`)."""
    return os.environ.get(ONLINE_ENV, "0") == "1"


def check_weights_mode(config: BackboneConfig) -> None:
    """Reject unknown `weights` / `precision` values with the list of valid ones."""
    if config.weights not in WEIGHT_MODES:
        raise ValueError(f"weights must be one of {WEIGHT_MODES}, got {config.weights!r}")
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {config.precision!r}")
    from avvp.extract.decode import PROFILES

    if config.profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {config.profile!r}")


def require_network(backbone) -> None:
    """Backbones built with weights="none" (network_inputs) never run their network."""
    if backbone.inputs_only:
        raise RuntimeError(f"{backbone.name}: built with weights='none' (inputs only); it has no network")


def announce_random_weights(backbone: str, stream: TextIO | None = None) -> None:
    """The one-line stderr notice every backbone prints when built with random weights."""
    print(
        f"avvp: NOTICE: backbone {backbone!r} uses RANDOM weights (--weights random); its outputs carry "
        f"no pretrained information and are for testing only",
        file=stream if stream is not None else sys.stderr,
        flush=True,
    )


def torch_hub_checkpoint_dir() -> Path:
    """torch's standard weights cache, `$TORCH_HOME/hub/checkpoints` (read at call time)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache_dir() -> Path:
    """huggingface_hub's cache directory, computed at call time from HF_HUB_CACHE / HF_HOME.

    huggingface_hub reads these variables once at import; computing them here means a changed
    environment (a test, a CLI flag) is honoured even after the library has been imported.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def package_dir(package: str) -> Path:
    """The directory of an installed Python package (laion_clap downloads its checkpoints there)."""
    import importlib.util

    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        raise ImportError(f"{package} is not installed")
    return Path(found.origin).parent


def file_cache_dir(spec: WeightsSpec) -> Path:
    """Where a single-file cache keeps `spec`'s file: torch's checkpoints folder or the package's directory."""
    return torch_hub_checkpoint_dir() if spec.cache == "torch_hub" else package_dir(spec.package)


def missing_weights_message(spec: WeightsSpec, searched: list[Path], weights_dir: str | None,
                            reason: str = "") -> str:
    """The WeightsUnavailable text: which file, where it was looked for, and every way out."""
    names = " or ".join(repr(n) for n in (spec.filename, *spec.alt_filenames))
    lines = [
        f"{spec.backbone}: pretrained weights {spec.weights_name} are not available"
        + (f" ({reason})" if reason else "") + ".",
        f"  expected file: {names}",
        "  looked in: " + (", ".join(str(p) for p in searched) if searched else "(nowhere)"),
    ]
    if spec.url:
        lines.append(f"  download from: {spec.url}")
    where = Path(weights_dir) if weights_dir else Path("DIR")
    lines.append(f"  fix: save the file as {where / spec.filename} and pass --weights-dir {where}")
    if spec.cache == "torch_hub":
        lines.append(f"   or: put it in the torch cache as {torch_hub_checkpoint_dir() / spec.filename}")
    elif spec.cache == "package":
        with contextlib.suppress(ImportError):
            lines.append(f"   or: put it in {spec.package}'s download directory as {package_dir(spec.package) / spec.filename}")
    elif spec.cache == "hf_hub" and spec.hf_repo:
        lines.append(f"   or: have huggingface_hub cache {spec.hf_repo} (files {', '.join(spec.hf_filenames)}) "
                     f"under {hf_hub_cache_dir()}")
    if spec.cache != "none":
        lines.append(f"   or: set {ONLINE_ENV}=1 to let avvp download it")
    lines.append("   or: pass --weights random (seeded random init; features are meaningless, tests only)")
    return "\n".join(lines)


def _verified(spec: WeightsSpec, path: Path, source: str, stream: TextIO | None = None) -> ResolvedWeights:
    """Wrap a found file; hash-check it when the spec publishes a hash prefix."""
    name = path.name
    if name != spec.filename:
        ident = f"{spec.weights_name} (file {name})"
    else:
        ident = spec.weights_name
    if not spec.sha256_prefix:
        return ResolvedWeights(path, ident, source, None)
    # Alternative file names carry their own published prefix (torchvision's "<name>-<sha8>.pth").
    expected = spec.sha256_prefix if name == spec.filename else Path(name).stem.rsplit("-", 1)[-1]
    digest = sha256_file(path)
    if digest.startswith(expected):
        return ResolvedWeights(path, ident, source, True)
    print(
        f"avvp: WARNING: {path} does not match the published SHA-256 prefix {expected} "
        f"(got {digest[:16]}); loading it anyway and recording the digest in the 'weights' attribute",
        file=stream if stream is not None else sys.stderr,
        flush=True,
    )
    return ResolvedWeights(path, f"{ident} [sha256 {digest[:16]} != published {expected}]", source, False)


def resolve_weights_file(spec: WeightsSpec, weights_dir: str | None) -> ResolvedWeights:
    """Find (or, when allowed, download) the file for `spec`; raise WeightsUnavailable otherwise."""
    names = (spec.filename, *spec.alt_filenames)
    if weights_dir is not None:
        searched = [Path(weights_dir) / n for n in names]
        for path in searched:
            if path.is_file():
                return _verified(spec, path, "weights_dir")
        reason = "weights directory does not exist" if not Path(weights_dir).is_dir() else "file not found"
        raise WeightsUnavailable(missing_weights_message(spec, searched, weights_dir, reason))

    if spec.cache in ("torch_hub", "package"):
        cache_dir = file_cache_dir(spec)
        searched = [cache_dir / n for n in names]
        for path in searched:
            if path.is_file():
                return _verified(spec, path, "cache")
        if not downloads_allowed():
            raise WeightsUnavailable(missing_weights_message(spec, searched, None, "offline and not cached"))
        import torch

        cache_dir.mkdir(parents=True, exist_ok=True)
        target = cache_dir / spec.filename
        # download_url_to_file writes to a temp file and renames it, and checks the hash prefix
        torch.hub.download_url_to_file(spec.url, str(target), hash_prefix=spec.sha256_prefix or None)
        return ResolvedWeights(target, spec.weights_name, "download", bool(spec.sha256_prefix) or None)

    if spec.cache == "hf_hub":
        from huggingface_hub import try_to_load_from_cache

        cache_dir = hf_hub_cache_dir()
        for hf_name in spec.hf_filenames:
            hit = try_to_load_from_cache(spec.hf_repo, hf_name, cache_dir=str(cache_dir))
            if isinstance(hit, str) and os.path.isfile(hit):
                return ResolvedWeights(Path(hit), spec.weights_name, "cache", None)
        searched = [cache_dir / f"models--{spec.hf_repo.replace('/', '--')}" / "snapshots" / "*" / n
                    for n in spec.hf_filenames]
        if not downloads_allowed():
            raise WeightsUnavailable(missing_weights_message(spec, searched, None, "offline and not cached"))
        from huggingface_hub import hf_hub_download

        errors = []
        for hf_name in spec.hf_filenames:
            try:
                path = hf_hub_download(spec.hf_repo, hf_name, cache_dir=str(cache_dir))
                return ResolvedWeights(Path(path), spec.weights_name, "download", None)
            except Exception as exc:  # noqa: BLE001 - collect every attempt for the message
                errors.append(f"{hf_name}: {type(exc).__name__}: {exc}")
        raise WeightsUnavailable(missing_weights_message(spec, searched, None, "download failed: " + "; ".join(errors)))

    raise WeightsUnavailable(missing_weights_message(spec, [], None, "no standard cache for these weights"))


def load_state_dict_file(path: Path | str) -> dict[str, Any]:
    """Read a state dict from a .safetensors file or a torch pickle (weights_only, no code execution).

    Unwraps the two common containers ({"state_dict": ...} and DataParallel's "module." prefix).
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    try:
        return unwrap_state_dict(state)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net")  # containers training scripts write


def unwrap_state_dict(obj: Any) -> dict[str, Any]:
    """The state dict inside a loaded checkpoint object (the one unwrapping rule of avvp): an `nn.Module`'s
    own, a plain {name: tensor} dict, or the first of `STATE_DICT_KEYS` holding one; DataParallel's
    "module." prefix removed when every key has it. ValueError naming the top-level keys otherwise."""
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state dict, found {type(obj).__name__}")
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                return unwrap_state_dict(obj[key])
        raise ValueError(f"no state dict found (top-level keys: {sorted(map(str, obj))[:20]})")
    if obj and all(str(k).startswith("module.") for k in obj):
        return {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Run model construction under a fixed torch seed without disturbing the caller's RNG state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ----------------------------------------------------------------------------------------------
# execution context


def torch_device(config: BackboneConfig):
    """The backbone's torch device; prints the precision notice (once) when the mode will be slow there."""
    import torch

    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {config.device!r} requested but this torch has no CUDA device")
    precision_notice(config.precision, device.type)
    return device


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty where it is unreadable)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


# the CPU units that make autocast to that dtype faster than fp32 (oneDNN kernels); without them the
# dtype is emulated (converted around fp32 kernels) and a forward is slower than plain fp32
CPU_UNITS = {"bf16": ("amx_bf16", "avx512_bf16"), "fp16": ("amx_fp16", "avx512_fp16")}
_NOTICED: set[tuple[str, str]] = set()


def cpu_precision_support(precision: str, flags: frozenset[str] | None = None) -> tuple[bool, tuple[str, ...]]:
    """(does this CPU have units for `precision`?, the flags looked for). fp32 is always supported."""
    units = CPU_UNITS.get(precision, ())
    if not units:
        return True, ()
    flags = cpu_flags() if flags is None else flags
    return any(u in flags for u in units), units


def precision_notice(precision: str, device_type: str, stream: TextIO | None = None,
                     flags: frozenset[str] | None = None) -> str | None:
    """Print (once per process and mode) why a reduced precision will be slow on this CPU; returns the text."""
    if device_type != "cpu" or precision == "fp32":
        return None
    ok, units = cpu_precision_support(precision, flags)
    if ok:
        return None
    text = (f"avvp: NOTICE: --precision {precision} on a CPU without {precision} units (none of "
            f"{', '.join(units)} in /proc/cpuinfo): autocast emulates {precision} and is expected to be SLOWER "
            f"than fp32 here, with less exact numbers; use --precision fp32 on this machine")
    if (precision, device_type) not in _NOTICED:
        _NOTICED.add((precision, device_type))
        print(text, file=stream if stream is not None else sys.stderr, flush=True)
    return text


@contextlib.contextmanager
def exact_fp32(device) -> Iterator[None]:
    """fp32 without TF32 on CUDA (`torch.backends.cuda.matmul.allow_tf32` and `cudnn.allow_tf32` False
    for the duration; cuDNN convolutions default to TF32 otherwise); the previous flags are restored after.
    On CPU nothing is changed: oneDNN's fp32 kernels are exact unless `torch.backends.mkldnn.fp32_precision`
    is lowered by the user."""
    import torch

    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def autocast_for(config: BackboneConfig, device) -> contextlib.AbstractContextManager:
    """The numeric context of a forward pass: exact fp32 ("fp32", the default) or autocast to bf16/fp16."""
    import torch

    if config.precision == "fp32":
        return exact_fp32(device)
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {config.precision!r}")
    dtype = torch.float16 if config.precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def chunked(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most `size` covering range(total)."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))
