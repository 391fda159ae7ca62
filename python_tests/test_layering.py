"""ramo's import graph between its parts (a subpackage, or a top-level module) has no cycles,
and each part imports only parts of its own layer or the layers below (docs/architecture.md,
"Layers": the table there is LAYERS here).

`python -m python_tests.test_layering` prints the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "ramo"

# The layers, top first; every part of ramo/ is in one. The op layer knows nothing of the
# method; the data types and the store know nothing of models or judges; the CLI and the
# pipeline sit on top.
LAYERS = [
    {"__main__", "cli", "pipeline", "demo", "report"},
    {"steps"},
    {"rate", "select", "label", "adapter", "reward", "evaluation", "explain", "rl", "rewards",
     "study"},
    {"models"},
    {"judge"},
    {"tokenization", "encoders", "relevance", "progress", "plots", "device"},
    {"ratings"},
    {"io", "checks"},
    {"__init__", "ops", "reference", "backends", "triton_kernels", "_C"},
]
# Nothing imports these but `python -m ramo`, the CLI and the demo.
APP_ONLY = {"cli", "pipeline", "demo", "report"}


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """{part: the other parts it imports}, counting imports inside functions too (they are
    how ramo keeps `ramo --help` fast, not a way around the layering)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        here = part(".".join(relative.parts).removesuffix(".__init__"))
        targets = graph.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
                if node.module == "ramo":  # from ramo import ops
                    names = [f"ramo.{alias.name}" for alias in node.names]
            else:
                continue
            targets.update(part(n) for n in names if n.startswith("ramo.") and part(n) != here)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_cycles_between_parts():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers():
    graph = import_graph()
    layer = {name: depth for depth, names in enumerate(LAYERS) for name in names}
    assert set(graph) - set(layer) == set(), "a part of ramo/ that LAYERS does not place"
    upward = {(name, target) for name, targets in graph.items() for target in targets
              if layer[target] < layer[name]}
    assert upward == set()
    importers = {name: sorted(n for n, targets in graph.items() if name in targets)
                 for name in APP_ONLY}
    assert importers == {"cli": ["__main__"], "pipeline": ["cli", "demo"],
                         "demo": ["cli"], "report": ["pipeline"]}


if __name__ == "__main__":
    graph = import_graph()
    for name in sorted(graph):
        if graph[name]:
            print(f"{name} -> {', '.join(sorted(graph[name]))}")
    print(f"cycles: {cycles(graph)}")
