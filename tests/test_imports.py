"""The import contract: arrows point down only (front-ends -> core -> base), no cycles.

Every `import` of the package is read from the source, including those inside functions
(a lazy import is still a dependency), and resolved to the module it names. Imports under
`if TYPE_CHECKING:` are left out: they name types for hints and never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

from source_trees import parse_module

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "facefuse"

# Layers, lowest first. A module may import modules of its own layer or a lower one.
BASE = {"errors", "config", "io", "imaging", "faces", "mesh", "mesh_reference", "pose", "align", "masks", "preview",
        "sharpness", "change"}
# hands and regions run mediapipe's graphs as detect does (its quiet_native_logs): core
CORE = {"registry", "detect", "hands", "regions", "roi", "blend", "pipeline", "engines", "onnxrt", "enhancers", "video"}
SHARED_FRONT = {"commands", "service", "jobs", "retention"}  # what the front-ends share
LAYERS = [BASE, CORE, SHARED_FRONT]  # anything else is a front-end (cli, api, webui, server, batch, bench, ...)


def layer_of(module: str) -> int:
    """facefuse.engines.onnx -> the layer of `engines`; the package itself is the facade (top)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    return len(LAYERS)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, modules: set[str], missing: list[str] | None = None) -> set[str]:
    """The package's modules that `name` imports (anywhere in the file); imports of modules
    that do not exist are added to `missing`."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    tree = parse_module(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []  # imports for type hints only: no dependency when the code runs
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                stem = ".".join(anchor + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            if stem.startswith("facefuse") and stem not in modules and missing is not None:
                missing.append(f"{name}: line {node.lineno}: {stem}")
            # `from . import mesh` names a module; `from .io import read_image` names one too
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # facefuse.engines.onnx.Runner -> facefuse.engines.onnx
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("facefuse"):
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = all_modules()
    names = set(mods)
    return {name: imports_of(name, path, names) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of modules (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a))


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_no_base_or_core_module_imports_a_layer_above_it():
    assert upward_imports(import_graph()) == []


def test_every_import_of_the_package_names_a_module_that_exists():
    """A lazy `from .io import x` inside a subpackage would only fail when that code runs."""
    mods = all_modules()
    missing: list[str] = []
    for name, path in mods.items():
        imports_of(name, path, set(mods), missing)
    assert missing == []


def test_the_checks_fail_on_a_cycle_and_on_an_upward_import():
    """The two checks themselves: a graph with api <-> webui, and the core importing a front-end."""
    graph = {"facefuse.api": {"facefuse.webui"}, "facefuse.webui": {"facefuse.api"},
             "facefuse.pipeline": {"facefuse.cli"}, "facefuse.cli": set()}
    assert find_cycle(graph) == ["facefuse.api", "facefuse.webui", "facefuse.api"]
    assert upward_imports(graph) == ["facefuse.pipeline -> facefuse.cli"]


def test_imports_inside_functions_and_relative_imports_are_seen():
    graph = import_graph()
    assert "facefuse.pipeline" in graph["facefuse.service"]  # imported inside FusionPool.__init__
    assert "facefuse.faces" in graph["facefuse.engines"]  # `from ..faces import` in a package
    assert "facefuse.bench.detect" in graph["facefuse.bench"]  # `from .detect import` in bench/__init__
    assert "facefuse.mesh" in graph["facefuse.masks"]  # `from . import mesh`
