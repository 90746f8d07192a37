"""The package's shape: sub-packages follow the pipeline, imports only run down it, no circles; ruff passes.

Read from the source with `ast` (nothing is imported), so it runs in milliseconds.
"""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "distil"
# The pipeline's stages, first to last: a module may import from its own stage and those before it.
STAGES = ["config", "store", "science", "evaluation", "search", "report", "preflight", "cli"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> int | None:
    """Index in STAGES of `distil.<stage>[...]`; None for the package itself."""
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 else None


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The distil modules `path` imports, at any depth of the file (function-level imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("distil")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distil") and not node.level:
            for a in node.names:  # `from distil.report import leaderboard` imports a module
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in modules else node.module)
    return found & modules


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: imports_of(p, set(files)) - {m} for m, p in files.items()}


def test_every_module_belongs_to_a_stage(graph):
    unknown = sorted(m for m in graph if m != "distil" and m.split(".")[1] not in STAGES)
    assert not unknown, f"modules outside the pipeline's stages {STAGES}: {unknown}"


def test_imports_only_run_down_the_pipeline(graph):
    upward = sorted(f"{m} -> {i}" for m, deps in graph.items() for i in deps
                    if stage(m) is not None and stage(i) is not None and stage(i) > stage(m))
    assert not upward, f"imports from a later stage: {upward}"


def test_no_import_circle(graph):
    """Depth-first search for a back edge; the message names one circle."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d] if d in path else [m, d]
            if d not in state and (circle := visit(d, path + [d])):
                return circle
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (circle := visit(m, [m])):
            pytest.fail(f"import circle: {' -> '.join(circle)}")


def test_ruff_passes_with_line_length_120():
    """pyproject's [tool.ruff] (line length 120) over the package, run_sweep.py, tests and benchmarks."""
    ruff = shutil.which("ruff")
    assert ruff, "ruff is a test dependency: pip install -e '.[test]'"
    run = subprocess.run([ruff, "check", "distil", "run_sweep.py", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]
