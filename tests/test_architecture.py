"""The import rules of docs/architecture.md: imports point down the data flow, never up, and no circle of
imports remains inside a package.

Walks every module of `avvp/` with `ast` (function-level imports included: a lazy import is still a
dependency) and fails on an import from a later stage of the flow. The few upward imports the code still
has are listed below as debt, each with the move that pays it; the test also fails when a listed one is
gone, so the list only shrinks. The same walk gives the module graph in which no circle may remain.
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


# ------------------------------------------------------------------------------- no circle of imports
def module_imports(path: Path, modules: set[str]) -> set[str]:
    """The avvp modules (among `modules`) that the file `path` imports, wherever the statement stands
    (module level, a function, `if TYPE_CHECKING:`). `from P import M` is the module P.M when there is one,
    else P. Not counted: the parent packages Python runs first (every submodule would close a circle with a
    package that re-exports it), and a registry's plug-in loading (its `providers`, and the imports in its
    `load=` function): a plug-in imports the registry to register, and the registry's first lookup imports
    the plug-ins by design (docs/architecture.md, registries)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    load_functions = {kw.value.id for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Registry"
                      for kw in node.keywords if kw.arg == "load" and isinstance(kw.value, ast.Name)}
    plug_in_loading = {id(inner) for node in ast.walk(tree)
                       if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in load_functions
                       for inner in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in plug_in_loading:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                member = f"{node.module}.{alias.name}"
                found.add(member if member in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & modules


def import_circles(package: Path = PACKAGE) -> list[list[str]]:
    """The circles of the module import graph of `package`: each strongly connected component of more than
    one module (or a module importing itself), sorted."""
    paths = {module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    graph = {name: sorted(module_imports(path, set(paths))) for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return sorted(circles)


def test_no_import_circle_inside_a_package():
    circles = import_circles()
    assert not circles, "circles of imports (a module that both imports and is imported by another, directly or " \
        "through others; lazy and TYPE_CHECKING imports count):\n" + "\n".join(f"  {' <-> '.join(c)}" for c in circles)


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"__init__.py": "", **files}.items():
        path = root / "avvp" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "avvp"


def test_circle_check_catches_a_planted_circle(tmp_path):
    # the circle this check was written for: the core annotating with the local executor's summary
    core = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from avvp.pipeline.local import RunSummary\n"
    pkg = _package(tmp_path / "a", {"pipeline/__init__.py": "", "pipeline/core.py": core,
                                    "pipeline/local.py": "from avvp.pipeline.core import decode_job\n"})
    assert import_circles(pkg) == [["avvp.pipeline.core", "avvp.pipeline.local"]]
    # a lazy import closes a circle too, over three modules, `from package import module` spelled
    pkg = _package(tmp_path / "b", {"data/__init__.py": "", "data/a.py": "import avvp.data.b\n",
                                    "data/b.py": "from avvp.data import c\n",
                                    "data/c.py": "def f():\n    from avvp.data.a import g\n"})
    assert import_circles(pkg) == [["avvp.data.a", "avvp.data.b", "avvp.data.c"]]
    # imports one way only, and a registry loading its plug-ins, are no circle
    registry = ("from avvp.registry import Registry\n"
                "def _load():\n    from avvp.data import plugin\n"
                "R = Registry('x', providers=('avvp.data.plugin',), load=_load)\n")
    pkg = _package(tmp_path / "c", {"registry.py": "", "data/__init__.py": "from avvp.data.reg import R\n",
                                    "data/reg.py": registry, "data/plugin.py": "from avvp.data.reg import R\n"})
    assert import_circles(pkg) == []
