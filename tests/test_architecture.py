"""The package's shape: every module imports, no import cycle, no module over 400 lines, and
``import geocam`` stays light (no Lightning, and no vector stack before a run writes vectors)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "geocam"
MAX_LINES = 400


def module_files() -> dict[str, Path]:
    """Dotted module name to file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = module_files()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports_of(name: str) -> set[str]:
    """Package modules that ``name`` imports, anywhere in its code (functions too), with the
    subpackages an import runs on the way (outside the importer's own package)."""
    tree = ast.parse(MODULES[name].read_text())
    here = name.split(".") if _is_package(name) else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module]
            targets += [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES]
        for target in targets:
            if target not in MODULES:
                continue
            found.add(target)
            parts = target.split(".")
            for i in range(2, len(parts)):  # subpackages run on the way, not the root
                parent = ".".join(parts[:i])
                if not name.startswith(parent + ".") and name != parent:
                    found.add(parent)
    found.discard(name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_inside_the_package() -> None:
    graph = {name: imports_of(name) for name in MODULES if name != "geocam"}
    assert find_cycle(graph) is None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    if name in ("geocam.distributed",):
        pytest.importorskip("distributed")
    importlib.import_module(name)


def test_no_module_is_over_the_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def test_import_geocam_loads_no_lightning() -> None:
    code = (
        "import geocam, sys; "
        "bad = [m for m in sys.modules if m.startswith(('lightning', 'pytorch_lightning'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_scene_run_loads_the_vector_stack_only_to_write_vectors() -> None:
    """pandas, geopandas, pyogrio (its own GDAL) and scipy would add to the model pass's peak RSS."""
    code = (
        "import geocam.cli.run, geocam.pipeline.run, geocam.pipeline.raster_pass, sys; "
        "bad = [m for m in ('pandas', 'geopandas', 'pyogrio', 'scipy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
