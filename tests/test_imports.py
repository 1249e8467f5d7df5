"""The project's `datasets/` shares its name with Hugging Face's `datasets`, which is
installed in this environment on purpose: every way the project runs imports its own."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import datasets
from tests.conftest import REPO_ROOT

OURS = REPO_ROOT / "datasets"


def test_hugging_face_datasets_is_installed_and_would_shadow_ours():
    assert importlib.metadata.version("datasets")  # the clash is real in this environment
    # A bare interpreter outside the repository resolves the name to site-packages.
    found = subprocess.run(
        [sys.executable, "-I", "-c", "import datasets, os; print(os.path.dirname(datasets.__file__))"],
        cwd="/", capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()
    assert Path(found) != OURS and "site-packages" in found


def test_tests_import_the_projects_datasets():
    from datasets import aloi  # Hugging Face's package has no such module

    assert Path(datasets.__file__).parent == OURS
    assert Path(aloi.__file__).parent == OURS


def test_sweep_script_imports_the_projects_datasets(tmp_path):
    # Config validation imports datasets.aloi; with the wrong package this would crash
    # with ModuleNotFoundError instead of naming the missing folder.
    missing = tmp_path / "no-aloi"
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "sweeps" / "crop_scale.py"), "--set", "data.aloi=aloi",
         "--set", f"data.aloi.root={missing}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 2, run.stderr
    assert "data.aloi: " in run.stderr and str(missing) in run.stderr


@pytest.mark.slow
def test_ray_workers_import_the_projects_datasets(ray_session):
    @ray_session.remote
    def where():
        import datasets

        return datasets.__file__

    assert Path(ray_session.get(where.remote())).parent == OURS


def _orchestrator_imports() -> dict[str, set[str]]:
    """orchestrator module -> the orchestrator modules it imports, at the top or inside a
    function. Modules are named by their dotted path below `orchestrator` (`sweep`,
    `tracking.writer`; a package by its folder, `tracking`), so a package's modules are in
    the graph as well as the folder's."""
    import ast

    folder = REPO_ROOT / "orchestrator"
    paths = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:  # not orchestrator/__init__.py, the folder itself
            paths[".".join(parts)] = path

    def target(module: str) -> str:
        return module.removeprefix("orchestrator").removeprefix(".")

    graph = {}
    for name, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and (
                    node.module == "orchestrator" or (node.module or "").startswith("orchestrator.")):
                # `from orchestrator.tracking import callback` imports a module; `from
                # orchestrator.tracking.keys import TAG_PARENT` a name of one.
                base = target(node.module)
                found |= {f"{base}.{a.name}".lstrip(".") if f"{base}.{a.name}".lstrip(".") in paths else base
                          for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {target(a.name) for a in node.names if a.name.startswith("orchestrator.")}
        graph[name] = found - {name, ""}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A chain of imports that returns to its start (depth-first), or None."""
    state: dict[str, int] = {}  # 1: on the current chain, 2: done

    def visit(module: str, chain: list[str]) -> list[str] | None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                return [*chain, module, dep]
            if dep not in state and (found := visit(dep, [*chain, module])):
                return found
        state[module] = 2
        return None

    return next((c for m in sorted(graph) if m not in state and (c := visit(m, []))), None)


def test_imports_inside_orchestrator_point_one_way():
    graph = _orchestrator_imports()
    assert {"tables", "rows", "report", "sweep_artifacts", "study"} <= set(graph)
    assert "tables" in graph["report"] and "rows" in graph["tables"]  # the parser sees lazy and top imports
    # A package's modules are nodes of their own, and their imports of each other are edges.
    assert {"tracking", "tracking.keys", "tracking.writer", "tracking.callback"} <= set(graph)
    assert {"tracking.writer", "tracking.runs", "naming"} <= graph["tracking.callback"]
    assert "tracking.keys" in graph["compare"]
    assert find_cycle(graph) is None


def test_packages_inside_orchestrator_re_export_nothing():
    """A package's `__init__` imports none of its modules: each name has one home, imported
    from there (and importing one module of a package never loads the others)."""
    folder = REPO_ROOT / "orchestrator"
    graph = _orchestrator_imports()
    packages = [".".join(p.parent.relative_to(folder).parts) for p in folder.rglob("*/__init__.py")]
    assert "tracking" in packages
    assert {name: graph[name] for name in packages if graph[name]} == {}


def test_the_cycle_check_finds_a_circle():
    assert find_cycle({"report": {"tables"}, "tables": {"sweep_artifacts"}, "sweep_artifacts": {"tables"}}) == [
        "report", "tables", "sweep_artifacts", "tables"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_folders_import_downwards():
    """`datasets/` imports neither `trainables/` nor `orchestrator/`, and `trainables/` not
    `orchestrator/` (top-level or inside a function): each folder is usable below the ones above."""
    import ast

    above = {"datasets": ("trainables", "orchestrator"), "trainables": ("orchestrator",)}
    upward = []
    for folder, forbidden in above.items():
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                upward += [f"{path.relative_to(REPO_ROOT)}:{node.lineno} imports {name}"
                           for name in names if name.split(".")[0] in forbidden]
    assert upward == []
