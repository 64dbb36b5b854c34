"""The layering of the code base, read from its source (no Django needed).

Layers, bottom to top (README, Architecture):
  core (`autopilot`)  ←  blueprints  ←  runs  ←  manager (`autopilot.manager`)  ←  doors
A module may import its own layer and the layers below it, never one above. Doors (API, views, web
pages, URLs, CLI and management commands, MCP, django-q2 task entry points, websocket consumers,
settings, the admin of blueprints/runs/manager) sit on top and may import any layer. A lower layer
tells an upper one what happened through a seam (autopilot.seams, runs.lifecycle, state after-hooks).

No module imports another lazily (inside a function) except an AppConfig.ready() (models are loaded
only then) and the short list ALLOWED_LAZY, each with its reason. No import cycle at all.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("autopilot", "blueprints", "runs")
SKIPPED_DIRS = {"migrations", "__pycache__", "static", "templates"}

LAYERS = {"core": 0, "blueprints": 1, "runs": 2, "manager": 3}
DOOR_PARTS = {
    "api",
    "views",
    "web",
    "web_urls",
    "urls",
    "management",
    "mcp",
    "tasks",
    "consumers",
    "routing",
    "asgi",
    "wsgi",
    "settings",
    "cli",
    "admin",
    "templatetags",
}
# The core's admin: the upper layers' admins extend it; it imports none of them.
NOT_DOORS = {"autopilot.admin"}

# (importer, imported): reason. Lazy imports of project modules allowed outside AppConfig.ready().
ALLOWED_LAZY: dict[tuple[str, str], str] = {
    (
        "autopilot.mcp.agents",
        "autopilot.mcp.server",
    ): "the mcp SDK takes ~0.5 s to import; only agent runs need it",
}


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            if SKIPPED_DIRS & set(path.relative_to(root).parts):
                continue
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


class _Imports(ast.NodeVisitor):
    """Every import of a project module: (imported module, line, inside a function?, in ready()?)."""

    def __init__(self, module: str, is_package: bool, modules: dict[str, Path]):
        self.base = module.split(".") if is_package else module.split(".")[:-1]
        self.modules = modules
        self.functions: list[str] = []
        self.found: list[tuple[str, int, bool, bool]] = []

    def _add(self, name: str, line: int) -> None:
        target = _resolve(name, self.modules)
        if target is not None:
            self.found.append((target, line, bool(self.functions), self.functions[-1:] == ["ready"]))

    def visit_FunctionDef(self, node):
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node):
        if node.level:
            prefix = self.base[: len(self.base) - node.level + 1]
            module = ".".join([*prefix, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        for alias in node.names:  # `from pkg import module` imports the module pkg.module
            submodule = f"{module}.{alias.name}"
            self._add(submodule if submodule in self.modules else module, node.lineno)


def import_graph(root: Path = ROOT) -> dict[str, list[tuple[str, int, bool, bool]]]:
    modules = _modules(root)
    graph = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py", modules)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        graph[name] = [edge for edge in visitor.found if edge[0] != name]
    return graph


def cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    successors = {m: sorted({e[0] for e in edges}) for m, edges in graph.items()}
    for start in successors:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter[0]
                counter[0] += 1
                stack.append(node)
                on_stack.add(node)
            nexts = successors.get(node, [])
            if i < len(nexts):
                work.append((node, i + 1))
                child = nexts[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def is_door(module: str) -> bool:
    parts = module.split(".")
    return module not in NOT_DOORS and any(p in DOOR_PARTS or p.startswith("views_") for p in parts[1:])


def layer(module: str) -> str:
    if module == "autopilot.manager" or module.startswith("autopilot.manager."):
        return "manager"
    return {"blueprints": "blueprints", "runs": "runs"}.get(module.split(".")[0], "core")


def upward_imports(graph) -> list[str]:
    return [
        f"{module}:{line} imports {target} ({layer(module)} → {layer(target)})"
        for module, edges in sorted(graph.items())
        if not is_door(module)
        for target, line, _, _ in edges
        if is_door(target) or LAYERS[layer(target)] > LAYERS[layer(module)]
    ]


def lazy_imports(graph) -> list[str]:
    return [
        f"{module}:{line} imports {target} inside a function"
        for module, edges in sorted(graph.items())
        for target, line, lazy, in_ready in edges
        if lazy and not in_ready and (module, target) not in ALLOWED_LAZY
    ]


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_there_is_no_import_cycle_among_project_modules(graph):
    assert cycles(graph) == []


def test_no_layer_imports_a_layer_above_it_or_a_door(graph):
    assert upward_imports(graph) == []


def test_no_lazy_imports_outside_app_ready_except_the_documented_ones(graph):
    assert lazy_imports(graph) == []
    assert all(reason.strip() for reason in ALLOWED_LAZY.values())


def test_the_checks_see_a_cycle_an_upward_import_and_a_lazy_import(tmp_path):
    # Given a tiny project with runs.worker → manager (lazily) → runs.services → runs.worker
    for package, files in {
        "autopilot": {
            "__init__.py": "",
            "manager/__init__.py": "",
            "manager/hooks.py": "from runs.services import go\n",
        },
        "runs": {
            "__init__.py": "",
            "services.py": "from runs import worker\n",
            "worker.py": "def f():\n    from autopilot.manager import hooks\n",
        },
        "blueprints": {"__init__.py": ""},
    }.items():
        for name, text in files.items():
            path = tmp_path / package / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    # When the checks read it
    small = import_graph(tmp_path)
    # Then each finds its problem
    assert cycles(small) == [["autopilot.manager.hooks", "runs.services", "runs.worker"]]
    assert upward_imports(small) == ["runs.worker:2 imports autopilot.manager.hooks (runs → manager)"]
    assert lazy_imports(small) == ["runs.worker:2 imports autopilot.manager.hooks inside a function"]


def test_the_layers_are_those_the_readme_names():
    modules = ("autopilot.state", "blueprints.graph", "runs.worker", "autopilot.manager.tick")
    assert [layer(m) for m in modules] == ["core", "blueprints", "runs", "manager"]
    assert is_door("autopilot.manager.api.views") and is_door("blueprints.views_tasks")
    assert is_door("autopilot.mcp.tools")
    assert not is_door("autopilot.admin") and not is_door("autopilot.seams") and not is_door("runs.lifecycle")


def _edges_by_module(graph) -> dict[str, set[str]]:
    found = defaultdict(set)
    for module, edges in graph.items():
        for target, *_ in edges:
            found[module].add(target)
    return found


def test_the_manager_hears_runs_and_tasks_through_seams_not_imports(graph):
    edges = _edges_by_module(graph)
    assert not any(
        t.startswith("autopilot.manager") for m in ("runs.worker", "runs.services") for t in edges[m]
    )
    assert "autopilot.manager.listeners" in edges["autopilot.manager.apps"]
