"""The import graph of ``src/``: no cycle, serving and api free of pipeline code, no operations.

The graph is read from the source with `ast`, not by importing: every explicit import counts,
including those under ``if TYPE_CHECKING:`` and those inside functions, and relative imports are
resolved. ``from a.b import c`` is an edge to ``a.b`` (Python runs it) and, when ``a.b.c`` is a
module, to ``a.b.c`` too; the implicit import of a module's parent packages is not an edge.

Which module is which (read from the code):

* pipeline (pandas, scikit-learn, MLflow; writes the artifacts): `churn.dataset` (generate, load
  and check the CSV), `churn.features` (fit the preprocessor, split), `churn.train`,
  `churn.evaluate`, `churn.export` (compile fitted models into the data-only file),
  `churn.mlflow_store` (tracking and registration), `churn.cli` (the pipeline's commands),
  `churn.drift_report` (the offline drift report, logged to MLflow);
* serving core: the `churn.serving` package (numpy only; knows nothing of HTTP) and
  `churn.registry` (loads the served set from the model registry);
* api: the `churn.api` package (Flask);
* shared bottom, imported by both sides: `churn.schema`, `churn.model_record`, `churn.records`,
  `churn.registry_names`, the `churn.config` package (API settings, pipeline parameters,
  artifact paths), `churn.drift` (reference distributions, written by training, counted by
  the API);
* operations: the `churn_ops` package (and `benchmarks/`, outside ``src/``), never imported by
  the product.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGES = ("churn", "churn_ops")
PIPELINE = (
    "churn.cli",
    "churn.dataset",
    "churn.drift_report",
    "churn.evaluate",
    "churn.export",
    "churn.features",
    "churn.mlflow_store",
    "churn.train",
)
SERVING_SIDE = ("churn.serving", "churn.api", "churn.registry")
OPERATIONS = ("churn_ops", "benchmarks")

Graph = Mapping[str, frozenset[str]]


def _module_names(src: Path) -> dict[str, Path]:
    """Return each module of ``PACKAGES`` under ``src`` (a package by its name) and its file."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((src / package).rglob("*.py")):
            parts = path.relative_to(src).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _imported(module: str, path: Path, known: Mapping[str, Path]) -> Iterator[str]:
    """Yield the names ``module`` imports (project or not), relative imports resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".")
                if not is_package:
                    package = package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            yield base
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    yield f"{base}.{alias.name}"


def build_graph(src: Path = SRC) -> tuple[Graph, list[str]]:
    """Return the import graph of the project's modules, and the project imports that name none.

    Imports of anything outside ``churn``, ``churn_ops`` and ``benchmarks`` are left out.
    """
    known = _module_names(src)
    graph: dict[str, frozenset[str]] = {}
    unknown: list[str] = []
    for module, path in known.items():
        targets = set()
        for name in _imported(module, path, known):
            if not _within(name, (*PACKAGES, "benchmarks")):
                continue
            if name in known or _within(name, ("benchmarks",)):
                targets.add(name)
            else:
                unknown.append(f"{module} imports {name}, which is no module under src/")
        graph[module] = frozenset(targets - {module})
    return graph, unknown


def strong_groups(graph: Graph) -> list[set[str]]:
    """Return the groups of two or more modules that each reach one another (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph is small enough to recurse
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def find_cycles(graph: Graph) -> list[list[str]]:
    """Return one cycle (``[a, b, ..., a]``) through each strongly connected group of modules."""
    return [_cycle_in(graph, group) for group in strong_groups(graph)]


def _cycle_in(graph: Graph, group: set[str]) -> list[str]:
    """Return a shortest cycle through the first (sorted) module of ``group``, inside ``group``."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strong group


@pytest.fixture(scope="module")
def graph() -> Graph:
    """The import graph of ``src/``."""
    built, unknown = build_graph()
    assert not unknown, "\n".join(unknown)
    return built


def test_the_graph_sees_imports_under_type_checking_and_in_functions(tmp_path: Path) -> None:
    package = tmp_path / "churn"
    (package / "api").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "api" / "__init__.py").write_text("from churn.api.app import create_app\n")
    (package / "api" / "app.py").write_text("from churn.api import state\n")
    (package / "api" / "state.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .metrics import M\n"
    )
    (package / "api" / "metrics.py").write_text("def f():\n    from . import state\n")
    built, unknown = build_graph(tmp_path)
    assert not unknown
    assert built["churn.api.app"] == {"churn.api", "churn.api.state"}
    assert built["churn.api.metrics"] == {"churn.api", "churn.api.state"}
    assert find_cycles(built) == [["churn.api", "churn.api.app", "churn.api"]]
    (package / "api" / "__init__.py").write_text('"""No import."""\n')
    built, _ = build_graph(tmp_path)
    assert find_cycles(built) == [["churn.api.metrics", "churn.api.state", "churn.api.metrics"]]


def test_no_import_cycle(graph: Graph) -> None:
    groups = strong_groups(graph)
    described = [
        f"{' -> '.join(_cycle_in(graph, group))} (in this circle: {', '.join(sorted(group))})"
        for group in groups
    ]
    assert not groups, "import cycles:\n" + "\n".join(described)


def test_serving_and_api_import_no_pipeline_module(graph: Graph) -> None:
    missing = [m for m in PIPELINE if m not in graph]
    assert not missing, f"pipeline modules named here but gone from src/: {missing}"
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _within(module, SERVING_SIDE)
        for target in targets
        if _within(target, PIPELINE)
    )
    assert not wrong, "serving or api importing pipeline code:\n" + "\n".join(wrong)


def test_the_product_never_imports_operations(graph: Graph) -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _within(module, ("churn",))
        for target in targets
        if _within(target, OPERATIONS)
    )
    assert not wrong, "the product importing operations code:\n" + "\n".join(wrong)
