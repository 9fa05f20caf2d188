"""The package's import graph, read with ``ast``: no import cycle, and no import against the layer order.

The layers are the ones docs/architecture.md draws; a module may import modules of its own unit (the first name
below ``toontalker_bench``), of the core, and of any lower layer. Every import counts: one inside a function (a
deferred import is still a dependency) and one under ``if TYPE_CHECKING:`` (a type hint names the module it needs to
be read, and a type checker follows it like any other import).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "toontalker_bench"
ROOT = "toontalker_bench"

CORE = frozenset({"core"})
LAYERS: list[frozenset[str]] = [  # bottom to top
    CORE,
    frozenset({"assets"}),
    frozenset({"faces"}),
    frozenset({"data", "metrics"}),
    frozenset({"models"}),
    frozenset({"eval", "train"}),
    frozenset({"leaderboard"}),
    frozenset({"runs", "animate", "doctor"}),
    frozenset({"rescore"}),  # a run made from a published one: the run steps and the leaderboard's artifacts
    frozenset({"cli", "__init__"}),  # the package's own __init__: the library face, over everything it names
    frozenset({"__main__"}),
]


def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (a package's own ancestors are not counted: importing a submodule
    runs its package's ``__init__``, which is not a dependency the submodule chose)."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, (path, is_pkg) in mods.items():
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                target = ".".join(base[: len(base) - node.level + 1] + [node.module] if node.level and node.module
                                  else base[: len(base) - node.level + 1] if node.level else [node.module or ""])
                found = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                targets = found or [target]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:  # `import toontalker_bench.x.y` style: the longest known prefix
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):
                    graph[name].add(t)
    return graph


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(u: str) -> int:
    for i, units in enumerate(LAYERS):
        if u in units:
            return i
    raise AssertionError(f"module unit {u!r} is in no layer: add it to LAYERS and to docs/architecture.md")


def test_every_unit_has_a_layer() -> None:
    for m in modules():
        layer(unit(m))


def test_no_import_against_the_layer_order() -> None:
    bad = []
    for src, targets in import_graph().items():
        for dst in targets:
            a, b = unit(src), unit(dst)
            if a == b or (a in CORE and b in CORE):
                continue
            if layer(b) >= layer(a):
                bad.append(f"{src} -> {dst}")
    assert not bad, "imports against the layer order:\n" + "\n".join(sorted(bad))


def test_no_import_cycle() -> None:
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_graph_sees_imports() -> None:
    """The checks above are only as good as the graph: known edges must be in it."""
    g = import_graph()
    assert "toontalker_bench.faces.detect" in g["toontalker_bench.data.tubes.worker"]  # deferred, from ...faces
    assert "toontalker_bench.core.errors" in g["toontalker_bench.core.io"]
    assert "toontalker_bench.data.tubes.track" in g["toontalker_bench.data.tubes.worker"]  # `from . import track`
    assert "toontalker_bench.metrics.pair" in g["toontalker_bench.metrics.base"]  # under `if TYPE_CHECKING:`
