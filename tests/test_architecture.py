"""The import graph of `service/`: no cycle, no import up the layer order (ARCHITECTURE.md).

Every module is parsed (ast, nothing is imported) and every `import service...` / `from service...
import ...` in it counts, wherever it is: at module level, inside a function, under
`if TYPE_CHECKING:`. A function-level import is the usual way to dodge a cycle, and a type-only
import still ties a module to the names of the one it imports; both are the couplings this test
is here to catch.

`from package import name` counts as an import of the module `package.name` when there is one
(`from service.config import office`), else of the package itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module belongs to the layer of the longest prefix listed for it (`service` itself
# is its empty __init__ only: every other module needs an entry); it may import its own layer and
# the layers below, never one above. Every package sits in one layer but telemetry, whose names
# are foundation, and alarms, whose record is (the store keeps it), so no upward import also means
# no cycle among the packages.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "service",
            "service.clock",
            "service.metrics",
            "service.broker",
            "service.telemetry.measurements",
            "service.alarms.record",
            "service.tasks",
        ),
    ),
    ("config", ("service.config",)),
    ("records", ("service.store", "service.live", "service.telemetry")),
    ("alarms", ("service.alarms",)),
    ("domain", ("service.energy", "service.notify", "service.auth", "service.onboard")),
    ("core", ("service.core",)),
    ("control", ("service.control",)),
    ("bus", ("service.bus",)),
    ("services", ("service.services",)),
    ("edge", ("service.api", "service.web")),
    ("app", ("service.app",)),
    ("entry", ("service.cli", "service.demo", "service.__main__")),
)

# Upward imports not yet fixed, each with its reason (each also closes a cycle, so the cycle check
# leaves them out too). The list only shrinks: an entry whose import is gone fails the test until it
# is removed.
PENDING: Mapping[tuple[str, str], str] = {}

# What drivers/ and simulators/ may import of service/: the site file's models (a simulated device
# is built from its site-file entry), nothing that runs.
OUTSIDE_ALLOWED = frozenset({"service.config.site"})

Graph = dict[str, set[str]]


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under a package directory."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported(source: str, module: str, *, is_package: bool = False) -> Iterator[str]:
    """Every dotted name `source` imports, anywhere in it (relative imports made absolute)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield from (f"{base}.{alias.name}" for alias in node.names)


def resolve(name: str, modules: Iterable[str]) -> str | None:
    """The module a dotted import name lands in (the longest known prefix), None outside service."""
    known = set(modules)
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def service_imports(source: str, module: str, modules: Iterable[str], *, is_package: bool = False) -> set[str]:
    """The service modules a module's source imports (itself left out)."""
    found = {resolve(name, modules) for name in imported(source, module, is_package=is_package)}
    return {target for target in found if target is not None and target != module}


def import_graph(package_dir: Path) -> Graph:
    """module -> the service modules it imports."""
    modules = module_names(package_dir)
    return {
        module: service_imports(path.read_text(), module, modules, is_package=path.name == "__init__.py")
        for module, path in modules.items()
    }


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest prefix listed for a module; KeyError if none is."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix != "service"
            if (module == prefix or inside) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    if best is None:
        raise KeyError(f"{module} is in no layer of LAYERS: add it")
    return best[1]


def upward(graph: Graph) -> list[str]:
    """The imports that go up the layer order, as 'a (layer) -> b (layer)'."""
    out = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            low, high = layer_of(module), layer_of(target)
            if high > low and (module, target) not in PENDING:
                out.append(f"{module} ({LAYERS[low][0]}) -> {target} ({LAYERS[high][0]})")
    return out


def without_pending(graph: Graph) -> Graph:
    """The graph without the PENDING imports (each of them closes a cycle until it is fixed)."""
    return {module: {t for t in targets if (module, t) not in PENDING} for module, targets in graph.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT / "service")


def test_every_module_has_a_layer(graph: Graph) -> None:
    for module in graph:
        layer_of(module)


def test_no_import_cycle(graph: Graph) -> None:
    assert cycles(without_pending(graph)) == []


def test_no_import_goes_up_the_layers(graph: Graph) -> None:
    assert upward(graph) == []


def test_pending_upward_imports_are_still_there(graph: Graph) -> None:
    gone = [edge for edge in PENDING if edge[1] not in graph.get(edge[0], set())]
    assert gone == [], "fixed: remove these from PENDING"


@pytest.mark.parametrize("package", ["drivers", "simulators"])
def test_drivers_and_simulators_import_only_the_site_models(graph: Graph, package: str) -> None:
    found = {
        (module, target)
        for module, path in module_names(ROOT / package).items()
        for target in service_imports(path.read_text(), module, graph, is_package=path.name == "__init__.py")
        if target not in OUTSIDE_ALLOWED
    }
    assert found == set()


# -- the checks themselves, on graphs made for the purpose -------------------------------------------


def test_a_route_importing_the_app_is_caught(graph: Graph) -> None:
    route = "service.api.routes.live"
    source = (ROOT / "service/api/routes/live.py").read_text() + "\nfrom service.app import Services\n"
    bad = {**graph, route: service_imports(source, route, graph)}
    assert "service.api.routes.live (edge) -> service.app (app)" in upward(bad)
    assert any({route, "service.app"} <= set(c) for c in cycles(bad))  # app -> api -> routes -> app


def test_hidden_imports_count() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from service.app import Services\n"
        "def f():\n    import service.core\n"
        "from .state import LiveState\n"
    )
    names = set(imported(source, "service.live.rooms_answer"))
    assert {"service.app.Services", "service.core", "service.live.state.LiveState"} <= names


def test_a_module_without_a_layer_is_refused() -> None:
    with pytest.raises(KeyError, match=r"service\.newthing"):
        layer_of("service.newthing")


def test_a_cycle_within_one_layer_is_caught() -> None:
    made = {"service.energy.a": {"service.energy.b"}, "service.energy.b": {"service.energy.a"}, "service.clock": set()}
    assert cycles(made) == [["service.energy.a", "service.energy.b"]]
    assert upward(made) == []
