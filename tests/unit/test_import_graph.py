"""The import graph of ``geetcd/``: no cycle, and nothing below the facade imports it.

Every ``import`` / ``from ... import`` of every module is an edge, wherever it is written:
at module level, under ``if TYPE_CHECKING:`` and inside functions (a cycle hidden in a
function or a type hint is still a cycle of the design). Relative imports are resolved;
``from geetcd import x`` is an import of the submodule ``geetcd.x`` when there is one, else
of the package ``geetcd`` itself (``geetcd/__init__.py``).

**The facade** is ``geetcd.client``, and the package ``geetcd`` too: ``geetcd/__init__.py``
re-exports the client and everything else, so ``import geetcd`` or ``from geetcd import
Client`` is an import of the facade. Only the package itself and the modules *above* the
facade may import either. Those are, and only those, the programs that use a client the
way an application does and that nothing inside the library imports:

* ``geetcd.cli`` (the ``geetcd`` command line) and ``geetcd.bench`` (the benchmark driver),
* ``geetcd.locust`` (locust users) and ``geetcd.demo`` (the ``geetcd-demo`` walkthrough),
* ``geetcd.testing`` (the etcd launcher and pytest plugin, whose fixtures hand out clients),
* ``geetcd.metrics`` and ``geetcd.tracing``: the Prometheus and OpenTelemetry adapters, which
  an application applies to its client (``instrument(client)``); nothing in the library
  imports them (they read the core only through the observer hook, ``geetcd.observe``).

Everything else (the core, the features built on it, ``geetcd.v2`` and ``geetcd.recipes``,
which type the client by a Protocol, ``geetcd.recipes._api.KVClient``) is below the facade.

Two small cycles are known and listed in :data:`KNOWN_CYCLES`, each between two modules of
one layer (transport and WebSocket; watch hub and its multiplexer) that were being reworked
elsewhere when this test was written; the test fails on any other cycle, on a known cycle
that grew, and on a known cycle that is gone (remove it from the list then).
"""

from __future__ import annotations

import ast
from pathlib import Path

import geetcd

PACKAGE_DIR = Path(geetcd.__file__).resolve().parent

FACADE = frozenset({"geetcd", "geetcd.client"})
"""The package (it re-exports the client) and the client module."""

ABOVE_THE_FACADE = (
    "geetcd.cli",
    "geetcd.bench",
    "geetcd.locust",
    "geetcd.demo",
    "geetcd.testing",
    "geetcd.metrics",
    "geetcd.tracing",
)
"""Modules (and packages, with their submodules) allowed to import the facade: see above."""

KNOWN_CYCLES = {
    # The watch hub builds its multiplexer (an import inside WatchHub.__init__), and the
    # multiplexer uses the hub's constants and stream classes.
    frozenset({"geetcd.watch_hub", "geetcd.watch_mux"}),
}
"""Cycles that exist today (see the module docstring); this set may only shrink."""

FUNCTION_LEVEL_ALLOWED = {
    ("geetcd.locust", "locust.runners"): "locust is an optional dependency (extra 'locust')",
    ("geetcd.watch_hub", "geetcd.watch_mux"): "one of the KNOWN_CYCLES",
    ("geetcd.cli.app", "geetcd.bench.cli"): "a separate program (geetcd-bench), loaded on demand",
    ("geetcd.cli.app", "geetcd.demo"): "a separate program (geetcd-demo), loaded on demand",
    ("geetcd.testing.plugin", "geetcd"): "the pytest plugin (not to be edited here)",
    ("geetcd.metrics", "prometheus_client"): "the optional dependency, checked on first use",
    ("geetcd.metrics", "geetcd.metrics._prometheus"): "needs the optional prometheus_client",
    ("geetcd.tracing", "opentelemetry.trace"): "the optional dependency, checked on first use",
    ("geetcd.tracing", "geetcd.tracing._otel"): "needs the optional opentelemetry-api",
}
"""Imports written inside functions, and why each one is there. Any other import is at
module level (or under TYPE_CHECKING)."""


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The geetcd module that importing ``name`` runs (``name`` or its nearest parent)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute names ``node`` (in ``module``) imports, geetcd or not."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package.pop()  # a module's relative imports start from its package
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    if base.partition(".")[0] != "geetcd":
        return [base]
    # ``from pkg import name``: the submodule pkg.name if there is one, else pkg itself.
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _imports() -> list[tuple[str, str, int, bool]]:
    """Every import in geetcd/: (importing module, imported name, line, inside a function)."""
    found: list[tuple[str, str, int, bool]] = []

    def visit(module: str, node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                targets = _targets(module, child)
                found.extend((module, target, child.lineno, in_function) for target in targets)
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(module, child, nested)

    for module, path in MODULES.items():
        visit(module, ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return found


IMPORTS = _imports()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, target, _line, _in_function in IMPORTS:
        owner = _owner(target) if target.partition(".")[0] == "geetcd" else None
        if owner is not None and owner != module:
            graph[module].add(owner)
    return graph


def _components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _a_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One import cycle through the component, as a path that ends where it starts."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {sorted(component)}")  # not a component then


def _is_above_the_facade(module: str) -> bool:
    return any(module == top or module.startswith(top + ".") for top in ABOVE_THE_FACADE)


def test_the_walk_sees_the_whole_package() -> None:
    assert {"geetcd", "geetcd.client", "geetcd.core", "geetcd.recipes.lock"} <= set(MODULES)
    graph = _graph()
    assert "geetcd.client" in graph["geetcd"]
    assert "geetcd.core" in graph["geetcd.client"]
    # TYPE_CHECKING imports count: v2.watch imports Core only for type hints.
    assert "geetcd.core" in graph["geetcd.v2.watch"]
    # Recipes and v2 are below the facade; the CLI is above it.
    assert not _is_above_the_facade("geetcd.recipes.lock")
    assert not _is_above_the_facade("geetcd.v2.client")
    assert _is_above_the_facade("geetcd.cli.kv") and not _is_above_the_facade("geetcd.client")


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    components = [frozenset(c) for c in _components(graph)]
    unknown = [c for c in components if c not in KNOWN_CYCLES]
    cycles = [" -> ".join(_a_cycle(graph, set(c))) for c in unknown]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in components]
    assert not gone, f"these known cycles are gone, remove them from KNOWN_CYCLES: {gone}"


def test_nothing_below_the_facade_imports_it() -> None:
    offenders = [
        f"{module} (line {line}) imports {target}"
        for module, target, line, _in_function in IMPORTS
        if _owner(target) in FACADE and module not in FACADE
        if not _is_above_the_facade(module)
    ]
    assert not offenders, "imports of the facade from below it:\n" + "\n".join(offenders)
    # The client module itself never imports the package (that would be a cycle too).
    assert not [t for m, t, _l, _f in IMPORTS if m == "geetcd.client" and _owner(t) == "geetcd"]


def test_imports_inside_functions_are_only_the_listed_ones() -> None:
    inside = {(module, target): line for module, target, line, nested in IMPORTS if nested}
    unexpected = [
        f"{module} (line {line}) imports {target}"
        for (module, target), line in inside.items()
        if (module, target) not in FUNCTION_LEVEL_ALLOWED
    ]
    message = "imports inside functions (move them up, or list them with the reason):\n"
    assert not unexpected, message + "\n".join(unexpected)
    stale = [key for key in FUNCTION_LEVEL_ALLOWED if key not in inside]
    assert not stale, f"listed but no longer inside a function: {stale}"
