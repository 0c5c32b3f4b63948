"""The import rule of docs/architecture.md: imports point down the data flow, never up.

Walks every module of `avvp/` with `ast` (function-level imports included: a lazy import is still a
dependency) and fails on an import from a later stage of the flow. The few upward imports the code still
has are listed below as debt, each with the move that pays it; the test also fails when a listed one is
gone, so the list only shrinks.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "avvp"

# The flow, upstream first. A module may import its own stage or an earlier one. `metrics` (the official
# protocol over arrays; it reads only `data`) sits right after `data` because the pseudo-label report and
# the trainer's validation use it; `acquire` (downloading the videos) comes before decoding; `demo` runs every stage through its library functions, after `parse`;
# `cli` holds no logic and is imported by nothing.
STAGES = (
    ("avvp", "avvp.registry", "avvp._env"),
    ("avvp.data",),
    ("avvp.metrics",),
    ("avvp.acquire",),
    ("avvp.extract",),
    ("avvp.pipeline",),
    ("avvp.pseudolabels",),
    ("avvp.models",),
    ("avvp.train",),
    ("avvp.parse",),
    ("avvp.demo",),
    ("avvp.cli",),
)
STAGE_OF = {name: rank for rank, names in enumerate(STAGES) for name in names}

# (importing module, imported module): what pays the debt. None is left; a new entry needs a reason here.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def stage(module: str) -> int | None:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        rank = STAGE_OF.get(".".join(parts[:i]))
        if rank is not None:
            return rank
    return None


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            # `from avvp import cli` names a module, not an attribute
            found.update(f"{node.module}.{a.name}" for a in node.names if node.module == "avvp")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Registry":
            # a registry's providers are imported on its first lookup: a dependency like any import
            for kw in node.keywords:
                if kw.arg == "providers" and isinstance(kw.value, (ast.Tuple, ast.List)):
                    found.update(e.value for e in kw.value.elts if isinstance(e, ast.Constant))
    return {name for name in found if name == "avvp" or name.startswith("avvp.")}


def upward_imports(package: Path = PACKAGE) -> set[tuple[str, str]]:
    upward = set()
    for path in sorted(package.rglob("*.py")):
        source = module_name(path, package)
        src_rank = stage(source)
        assert src_rank is not None, f"{source} belongs to no stage of the flow: add it to STAGES"
        for target in imports_of(path):
            dst_rank = stage(target)
            if dst_rank is not None and dst_rank > src_rank:
                # normalise `avvp.cli.train` etc. to the debt entry's granularity
                upward.add((source, target if (source, target) in KNOWN_UPWARD else _entry(source, target)))
    return upward


def _entry(source: str, target: str) -> str:
    for known_source, known_target in KNOWN_UPWARD:
        if known_source == source and (target == known_target or target.startswith(known_target + ".")):
            return known_target
    return target


def test_no_new_upward_import():
    new = sorted(upward_imports() - set(KNOWN_UPWARD))
    assert not new, "imports that point up the data flow (docs/architecture.md):\n" + "\n".join(f"  {a} -> {b}" for a, b in new)


def test_known_debt_is_still_debt():
    paid = sorted(set(KNOWN_UPWARD) - upward_imports())
    assert not paid, "paid off: remove from KNOWN_UPWARD:\n" + "\n".join(f"  {a} -> {b}" for a, b in paid)


def test_checker_catches_an_upward_import(tmp_path):
    pkg = tmp_path / "avvp"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "store.py").write_text("def f():\n    from avvp.train.loop import train\n")
    assert upward_imports(pkg) == {("avvp.data.store", "avvp.train.loop")}
    (pkg / "data" / "store.py").write_text("from avvp.registry import Registry\nimport avvp.data.llp\n")
    assert upward_imports(pkg) == set()
    (pkg / "data" / "store.py").write_text("from avvp.registry import Registry\nR = Registry('x', providers=('avvp.cli.eval',))\n")
    assert upward_imports(pkg) == {("avvp.data.store", "avvp.cli.eval")}
