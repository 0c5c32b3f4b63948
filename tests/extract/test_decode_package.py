"""The decode package's structure: no import circle with the backends, backends loaded by DECODERS'
first lookup, the Registry load hook, and the ffmpeg/ffprobe binaries read when a process starts.

(The decoding behaviour itself is tested in test_decode.py and test_reference_inputs.py.)
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import media
from avvp.extract.decode import DecodeError, decode_video, ffmpeg_binary, ffprobe_binary
from avvp.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
EXTRACT = ROOT / "avvp" / "extract"


def _modules(folder: str) -> list[str]:
    found = []
    for path in sorted((EXTRACT / folder).glob("*.py")):
        name = f"avvp.extract.{folder}" + ("" if path.stem == "__init__" else f".{path.stem}")
        found.append(name)
    return found


DECODE_MODULES = _modules("decode")
BACKEND_MODULES = _modules("decoders")


def _fresh_import(module: str, then: str = "") -> dict:
    """Import `module` alone in a new interpreter (optionally run `then`); report which avvp.extract
    modules got loaded."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"{then}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('avvp.extract'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    assert proc.returncode == 0, f"importing {module} alone failed:\n{proc.stderr[-3000:]}"
    return {"loaded": json.loads(proc.stdout.strip().splitlines()[-1]), "stdout": proc.stdout}


def test_the_package_has_the_expected_modules():
    # guards the lists the parametrised tests below walk (an empty list would pass vacuously)
    assert {"avvp.extract.decode", "avvp.extract.decode.process", "avvp.extract.decode.probe",
            "avvp.extract.decode.rate", "avvp.extract.decode.rules", "avvp.extract.decode.video",
            "avvp.extract.decode.backend", "avvp.extract.decode.result"} <= set(DECODE_MODULES)
    assert {"avvp.extract.decoders", "avvp.extract.decoders.ffmpeg_pipe",
            "avvp.extract.decoders.decord_reader", "avvp.extract.decoders.ffmpeg_reference"} <= set(BACKEND_MODULES)


@pytest.mark.parametrize("module", DECODE_MODULES)
def test_decode_modules_import_alone_without_the_backends(module):
    """Each decode module imports in a fresh interpreter, and none of them (nor avvp.extract, which
    re-exports the package) pulls in avvp.extract.decoders: the backends import decode, never the reverse."""
    loaded = _fresh_import(module)["loaded"]
    assert module in loaded
    assert [m for m in loaded if m.startswith("avvp.extract.decoders")] == []


@pytest.mark.parametrize("module", BACKEND_MODULES)
def test_backend_modules_import_alone(module):
    loaded = _fresh_import(module)["loaded"]
    assert module in loaded and "avvp.extract.decode" in loaded


def _module_level_imports(tree: ast.Module) -> set[str]:
    """Modules imported by statements that run at import time (not inside functions or classes)."""
    found: set[str] = set()
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []) or [])
    return found


@pytest.mark.parametrize("module", DECODE_MODULES)
def test_no_decode_module_imports_the_backends_at_module_level(module):
    # the static twin of the runtime check above: also catches an import hidden behind a flag
    path = EXTRACT / "decode" / ("__init__.py" if module == "avvp.extract.decode" else f"{module.rsplit('.', 1)[1]}.py")
    imported = _module_level_imports(ast.parse(path.read_text()))
    assert not {m for m in imported if m == "avvp.extract.decoders" or m.startswith("avvp.extract.decoders.")}


def test_module_level_import_finder_sees_a_bottom_of_module_import():
    # the pattern this package used to have, which the test above must catch
    tree = ast.parse("import os\n\ndef f():\n    import json\n\nfrom avvp.extract import decoders as _d  # noqa\n"
                     "try:\n    import avvp.extract.decoders.ffmpeg_pipe\nexcept ImportError:\n    pass\n")
    assert _module_level_imports(tree) == {"os", "avvp.extract", "avvp.extract.decoders",
                                           "avvp.extract.decoders.ffmpeg_pipe"}


def test_first_registry_lookup_loads_the_backends():
    """In a fresh interpreter DECODERS knows both backends without anyone importing them first."""
    out = _fresh_import("avvp.extract.decode",
                        "from avvp.extract.decode import DECODERS\nprint(json.dumps(DECODERS.names()))")
    assert json.loads(out["stdout"].strip().splitlines()[0]) == ["decord", "ffmpeg"]
    assert {"avvp.extract.decoders.ffmpeg_pipe", "avvp.extract.decoders.decord_reader"} <= set(out["loaded"])


# ---------------------------------------------------------------------------------------------------
# Registry(load=...)


def test_registry_load_runs_once_before_the_first_lookup():
    calls = []
    reg: Registry[int] = Registry("thing", load=lambda: calls.append(1) or reg.register("late")(7))
    reg.register("early")(1)  # registering does not load
    assert calls == []
    assert reg.get("late") == 7 and calls == [1]
    assert reg.names() == ["early", "late"] and "late" in reg and list(reg) == ["early", "late"]
    assert calls == [1]


@pytest.mark.parametrize("lookup", [lambda r: r.names(), lambda r: "x" in r, lambda r: r.get("x"), list])
def test_every_kind_of_lookup_loads(lookup):
    reg: Registry[int] = Registry("thing", load=lambda: reg.register("x")(1))
    lookup(reg)
    assert reg.names() == ["x"]


def test_a_failed_load_raises_and_is_retried():
    attempts = []

    def load():
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("backend missing")
        reg.register("x")(1)

    reg: Registry[int] = Registry("thing", load=load)
    with pytest.raises(ImportError, match="backend missing"):  # not "unknown thing 'x'"
        reg.get("x")
    assert reg.get("x") == 1 and len(attempts) == 2


def test_a_lookup_in_another_thread_waits_for_the_load():
    started, release = threading.Event(), threading.Event()

    def load():
        started.set()
        release.wait(5)
        reg.register("x")(1)

    reg: Registry[int] = Registry("thing", load=load)
    first = threading.Thread(target=reg.names)
    first.start()
    started.wait(5)
    seen = []
    second = threading.Thread(target=lambda: seen.append("x" in reg))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # blocked on the load, not answering from a half-filled registry
    release.set()
    first.join(5)
    second.join(5)
    assert seen == [True]


# ---------------------------------------------------------------------------------------------------
# AVVP_FFMPEG / AVVP_FFPROBE, read when a process starts


def _recording_tool(path: Path, log: Path, then: str) -> Path:
    path.write_text(f'#!/bin/sh\necho "$0 $*" >> "{log}"\n{then}\n')
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def short_clip(media_dir):
    return media.make_clip(media_dir / "package_short.mp4", seconds=2, fps=10)


@pytest.mark.parametrize("profile", ["clean", "reference"])
def test_binaries_set_after_import_are_the_ones_run(short_clip, tmp_path, monkeypatch, profile):
    """avvp is already imported (top of this file); the variables set now must still decide which
    binaries both decode paths and the probe run."""
    log = tmp_path / "calls.log"
    real_ffprobe = shutil.which("ffprobe")
    assert real_ffprobe
    fake_ffmpeg = _recording_tool(tmp_path / "my-ffmpeg", log, "exit 3")
    fake_ffprobe = _recording_tool(tmp_path / "my-ffprobe", log, f'exec "{real_ffprobe}" "$@"')
    monkeypatch.setenv("AVVP_FFMPEG", str(fake_ffmpeg))
    monkeypatch.setenv("AVVP_FFPROBE", str(fake_ffprobe))
    assert ffmpeg_binary() == str(fake_ffmpeg) and ffprobe_binary() == str(fake_ffprobe)
    with pytest.raises(DecodeError, match=r"ffmpeg failed \(exit 3\)"):
        decode_video(short_clip, window=2.0, profile=profile)
    calls = log.read_text().splitlines()
    assert [c.split()[0] for c in calls] == [str(fake_ffprobe), str(fake_ffmpeg)]
    assert "-i" in calls[1].split() and str(short_clip) in calls[1]


def test_binaries_default_to_path(monkeypatch):
    monkeypatch.delenv("AVVP_FFMPEG", raising=False)
    monkeypatch.delenv("AVVP_FFPROBE", raising=False)
    assert (ffmpeg_binary(), ffprobe_binary()) == ("ffmpeg", "ffprobe")
