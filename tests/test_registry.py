"""Registries see every entry however the caller got to them: entries registered in another module than
the registry's own come from the registry's `providers`, imported on the first lookup."""
from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from avvp.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
AVVP = ROOT / "avvp"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _registries() -> list[tuple[str, str]]:
    """(module, global name) of every `NAME = Registry(...)` of avvp/."""
    found = []
    for path in sorted(AVVP.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Registry":
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                found.append((_module(path), target.id))
    return found


def _registering_modules() -> list[str]:
    return [_module(p) for p in sorted(AVVP.rglob("*.py")) if ".register(" in p.read_text() and p.name != "registry.py"]


def _cross_module_registries() -> dict[tuple[str, str], list[str]]:
    """Registries holding an entry defined outside the registry's module, with every entry's name, after
    importing every module that registers something (what a full program would have seen)."""
    for module in _registering_modules():
        importlib.import_module(module)
    out = {}
    for module, name in _registries():
        registry = getattr(importlib.import_module(module), name)
        entries = [registry.get(n) for n in registry.names()]
        if any(getattr(e, "__module__", module) != module for e in entries if callable(e)):
            out[(module, name)] = registry.names()
    return out


def test_registries_are_found():
    found = dict.fromkeys(_registries())
    for expected in (("avvp.train.config", "PRESETS"), ("avvp.pipeline.executors", "EXECUTORS"),
                     ("avvp.models.base", "MODELS"), ("avvp.extract.backbones.base", "BACKBONES")):
        assert expected in found


def test_a_fresh_process_importing_only_the_registry_sees_every_entry():
    cross = _cross_module_registries()
    # the registries whose entries live in other modules (presets, MA's runner, Ray's executor, ...)
    assert {("avvp.train.config", "PRESETS"), ("avvp.train.config", "RUNNERS"),
            ("avvp.pipeline.executors", "EXECUTORS"), ("avvp.models.base", "MODELS")} <= set(cross)
    assert "ray" in cross[("avvp.pipeline.executors", "EXECUTORS")]
    assert "ma" in cross[("avvp.train.config", "RUNNERS")]
    for (module, name), full in cross.items():
        script = (f"import json, {module} as m\n"
                  f"r = m.{name}\n"
                  f"listed = r.names(); member = all(n in r for n in listed)\n"
                  f"print(json.dumps([listed, member, r.get(listed[-1]) is not None]))")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        listed, member, got = json.loads(out.stdout.strip().splitlines()[-1])
        assert listed == full, f"{module}.{name}: a fresh import sees {listed}, a full program {full}"
        assert member and got


def test_providers_are_imported_once_on_first_lookup_and_failures_are_not_hidden():
    from tests.helpers.registry_example import THINGS

    assert "tests.helpers.registry_example_provider" not in sys.modules
    assert THINGS._entries.keys() == {"early"}  # nothing imported before a lookup
    assert THINGS.names() == ["early", "late"]
    assert "late" in THINGS and THINGS.get("late") is object
    assert sys.modules["tests.helpers.registry_example_provider"].IMPORTS == 1

    broken = Registry("thing", providers=("no_such_provider_module",))
    for _ in range(2):  # reported on every lookup, never an incomplete list
        with pytest.raises(ModuleNotFoundError):
            broken.names()
