"""Pytest plugin (`pytest_plugins` in tests/conftest.py): the test tiers, assigned from what a test uses.

Four markers name what makes a test more than a unit test: `ffmpeg` (the ffmpeg/ffprobe binaries: media
made or decoded), `ray` (a Ray runtime), `backbone` (a feature network built) and `trainer` (a model
trained end to end: seconds of CPU each; `make test-fast` would be over 90 s with them). They are set
mechanically at collection: a test gets a marker when its function, a fixture it uses (directly or
through other fixtures) or a parameter reaches one of the objects in `NEEDS` below. "Reaches" follows
the names a function's code mentions (globals, attributes of modules it mentions, function-level imports)
and goes on through functions and classes defined under `tests`; it stops at the package (an avvp function
is judged by its own entry in `NEEDS`, not by what it calls). A test may also carry a marker by hand.

`pytest --unit` (`make test-fast`) runs the unit tier: every test with none of these markers and not
`slow`. It also enforces the tier, so a test that the rules above miss fails with a line naming the marker
it needs instead of passing on a machine that happens to have ffmpeg and Ray: ffmpeg/ffprobe on PATH (and
$AVVP_FFMPEG/$AVVP_FFPROBE) are stand-ins that exit 1 with that line, `import ray` and `ray.init` raise
it, and so does building a backbone network (`Backbone.load_model`, each backbone's `build_network`, the
`build_*` functions of the backbone modules). (A trainer run the rules miss only costs time.)

Outside the unit tier a test marked `ffmpeg` errors at set-up when the binaries are missing (no silent
skip); the other tests run without them.
"""
from __future__ import annotations

import importlib.abc
import inspect
import os
import shutil
import stat
import sys
import tempfile
import types
from pathlib import Path

import pytest

# What a test may reach, per marker: dotted prefixes of "module.qualname" (a module prefix covers everything
# in it; one ending in "_" covers the names that start so) or a module attribute that is neither (a
# registry: matched as that object). Subclasses of avvp's Backbone count as a backbone build wherever they
# are defined.
NEEDS: dict[str, tuple[str, ...]] = {
    "ffmpeg": (
        "tests.helpers.media",  # clips made by the ffmpeg binary; the media fixtures (media_fixtures) use it
        "avvp.extract.decode",
        "avvp.extract.decoders",
        "avvp.extract.reference_inputs",
        "avvp.extract.inputs.network_inputs",
        "avvp.demo.clips.make_",  # make_clip and make_clips encode with ffmpeg
        "avvp.demo.run",
        "avvp.pipeline.api",
        "avvp.pipeline.core.decode_",
        "avvp.pipeline.executors",
        "avvp.pipeline.local.run_local",
        "avvp.pipeline.ray_executor",
        "avvp.cli.extract.main",
        "avvp.cli.parse.main",
        "avvp.parse.run.parse_video",
    ),
    "ray": (
        "ray",
        "avvp.pipeline.ray_executor",
        "tests.helpers.raycluster",
    ),
    "backbone": (
        "avvp.extract.backbones.base.BACKBONES",  # a backbone got by name is built to be used
        "avvp.extract.backbones.clap_offline",
        "avvp.extract.backbones.vggish.build_",
        "avvp.demo.run",
        "avvp.pipeline.api",
        "avvp.pipeline.core.load_backbones",
        "avvp.pipeline.executors",
        "avvp.pipeline.local.run_local",
        "avvp.pipeline.ray_executor",
        "avvp.cli.extract.main",
        "avvp.cli.parse.main",
        "avvp.parse.run.load_parser",
    ),
    "trainer": (  # a model trained end to end (the loop, its recipes, avvp-train)
        "avvp.train.loop.Trainer",
        "avvp.train.train",
        "avvp.train.recipes",
        "avvp.cli.train.main",
    ),
}
TIER_MARKERS = tuple(NEEDS)
UNIT_HINT = "run it with `make test` (the whole suite), or mark it @pytest.mark.{marker} so `make test-fast` leaves it out"


def pytest_addoption(parser):
    parser.addoption("--unit", action="store_true",
                     help="the unit tier: no ffmpeg, no Ray, no backbone builds (enforced), no trainer runs, nothing slow")


def pytest_configure(config):
    for marker, what in (("ffmpeg", "runs the ffmpeg/ffprobe binaries (media made or decoded)"),
                         ("ray", "starts or joins a Ray runtime"), ("backbone", "builds a feature network"),
                         ("trainer", "trains a model end to end")):
        config.addinivalue_line("markers", f"{marker}: {what}; set at collection by tests/helpers/tiers.py")
    if config.getoption("unit"):
        _stand_in_binaries(config)


# ------------------------------------------------------------------------------------------- assignment
def _dotted(obj) -> str | None:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    return None


def _needs_of(obj, instances: dict[int, str]) -> set[str]:
    name = _dotted(obj)
    found = {instances[id(obj)]} if id(obj) in instances else set()
    if name is not None:
        found |= {marker for marker, prefixes in NEEDS.items() if any(_within(name, p) for p in prefixes)}
    if inspect.isclass(obj) and _is_backbone_class(obj):
        found.add("backbone")
    return found


def _within(name: str, prefix: str) -> bool:
    # a module or qualname prefix ("avvp.extract.decode" covers avvp.extract.decode.process.probe), or a name
    # prefix ending in "_" ("avvp.pipeline.core.decode_" covers decode_job and decode_windows)
    return name == prefix or name.startswith(prefix if prefix.endswith("_") else prefix + ".")


def _is_backbone_class(cls: type) -> bool:
    base = sys.modules.get("avvp.extract.backbones.base")
    return base is not None and issubclass(cls, base.Backbone) and cls is not base.Backbone


def _code_names(code: types.CodeType) -> set[str]:
    names, stack = set(), [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return names


def _mentioned(func) -> list:
    """The objects `func`'s code names: its globals (the items of a global list, tuple or dict too),
    attributes of modules it names, function-level imports."""
    code = getattr(func, "__code__", None)
    if code is None:
        return []
    names = _code_names(code)
    scope = getattr(func, "__globals__", {})
    objs = [scope[n] for n in names if n in scope]
    modules = [o for o in objs if isinstance(o, types.ModuleType)]
    modules += [sys.modules[n] for n in names if "." in n and n in sys.modules]  # `import a.b` / `from a.b import c`
    objs = _flatten(objs) + modules
    for module in modules:
        objs += [getattr(module, n) for n in names if n in vars(module)]
    return objs


def _flatten(objs) -> list:
    out, stack = [], list(objs)
    while stack:
        obj = stack.pop()
        if isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        else:
            out.append(obj)
    return out


def _named_instances() -> dict[int, str]:
    """id -> marker of the NEEDS entries that name a module attribute which is an instance (a registry)."""
    found = {}
    for marker, entries in NEEDS.items():
        for entry in entries:
            module_name, _, attr = entry.rpartition(".")
            obj = getattr(sys.modules.get(module_name), attr, None)
            if obj is not None and _dotted(obj) is None:
                found[id(obj)] = marker
    return found


def _reach(roots, instances: dict[int, str]) -> set[str]:
    found, seen, stack = set(), set(), _flatten(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        found |= _needs_of(obj, instances)
        ours = (getattr(obj, "__module__", None) or "").startswith("tests")
        if inspect.isfunction(obj) and ours:
            stack.extend(_mentioned(obj))
        elif inspect.isclass(obj) and ours:
            stack.extend(v for v in vars(obj).values() if inspect.isfunction(v))
    return found


def needs(item: pytest.Item, instances: dict[int, str] | None = None) -> set[str]:
    """The tier markers a collected test needs (see the module docstring)."""
    roots = [getattr(item, "obj", None)]
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(item, "fixturenames", ()):
        defs = info.name2fixturedefs.get(name) if info is not None else None
        if defs and defs[-1].func.__module__ != __name__:
            roots.append(defs[-1].func)
            if defs[-1].func.__module__ == "tests.helpers.media_fixtures":
                roots.append(sys.modules["tests.helpers.media"])
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        roots.extend(callspec.params.values())
    return _reach([r for r in roots if r is not None], _named_instances() if instances is None else instances)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    instances = _named_instances()
    for item in items:
        for marker in sorted(needs(item, instances) - {m.name for m in item.iter_markers()}):
            item.add_marker(marker)
    if config.getoption("unit"):
        keep, drop = [], []
        for item in items:
            (drop if any(item.get_closest_marker(m) for m in (*TIER_MARKERS, "slow")) else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


# ------------------------------------------------------------------------------------------- enforcement
def pytest_runtest_setup(item):
    if item.get_closest_marker("ffmpeg") and not item.config.getoption("unit"):
        missing = [b for b in ("ffmpeg", "ffprobe") if shutil.which(b) is None]
        if missing:  # an error, not a skip: the suite must not pass by running less
            pytest.fail(f"this test needs {', '.join(missing)} on PATH (apt-get install ffmpeg)", pytrace=False)


@pytest.fixture(autouse=True)
def _unit_tier_guard(request, monkeypatch):
    """Under --unit: Ray and backbone builds raise, naming the marker the test needs."""
    if not request.config.getoption("unit"):
        yield
        return

    def refuse(marker: str, what: str):
        def refused(*args, **kwargs):
            raise RuntimeError(f"{what} in the unit tier: {UNIT_HINT.format(marker=marker)}")
        return refused

    base = sys.modules.get("avvp.extract.backbones.base")
    if base is not None:  # every way a feature network gets built: the base hook, each backbone's, build_* helpers
        build = refuse("backbone", "a backbone build")
        monkeypatch.setattr(base.Backbone, "load_model", build)
        for name in base.BACKBONES.names():
            monkeypatch.setattr(base.BACKBONES.get(name), "build_network", build)
        for name, module in list(sys.modules.items()):
            if name.startswith("avvp.extract.backbones.") and module is not None:
                for attr, value in list(vars(module).items()):
                    if attr.startswith("build_") and inspect.isfunction(value) and value.__module__ == name:
                        monkeypatch.setattr(module, attr, build)
    if "ray" in sys.modules:
        monkeypatch.setattr(sys.modules["ray"], "init", refuse("ray", "ray.init"), raising=False)
    blocker = _RayBlocker()
    sys.meta_path.insert(0, blocker)
    try:
        yield
    finally:
        sys.meta_path.remove(blocker)


class _RayBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"import {name} in the unit tier: {UNIT_HINT.format(marker='ray')}")
        return None


def _stand_in_binaries(config) -> None:
    """ffmpeg and ffprobe that exit 1 with the hint, first on PATH (subprocesses inherit it)."""
    folder = Path(tempfile.mkdtemp(prefix="avvp-unit-tier-"))
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    for binary in ("ffmpeg", "ffprobe"):
        stub = folder / binary
        stub.write_text(f"#!/bin/sh\necho '{binary} in the unit tier: {UNIT_HINT.format(marker='ffmpeg')}' >&2\n"
                        "exit 1\n")
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.environ[f"AVVP_{binary.upper()}"] = str(stub)
    os.environ["PATH"] = str(folder) + os.pathsep + os.environ.get("PATH", "")
