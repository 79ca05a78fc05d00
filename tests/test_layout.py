"""The architecture as a test: ``run -> pipelines -> {teams, report} -> engine``, no cycle, and
no team importing another team (the red team never reads the blue team's code, and the blue
team's detectors and elicitation methods see only what the pipeline hands them)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sandbag"
TEAMS = {"redteam", "detect", "elicit", "supervision"}
TOP = {"run", "config"}  # the CLI and its validation: may import anything


def layer(module: str) -> str:
    """``sandbag.redteam.organisms`` -> ``redteam``; engine modules -> ``engine``."""
    part = module.split(".")[1] if "." in module else ""
    if part in TEAMS or part in ("pipelines", "report"):
        return part
    return "top" if part in TOP else "engine"


def imports(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Every module of the package -> the ``sandbag`` modules it imports (at any depth of the file)."""
    graph = {}
    for path in package.rglob("*.py"):
        rel = path.relative_to(package.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sandbag"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("sandbag"))
        graph[name] = found
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


ALLOWED = {
    "top": {"top", "pipelines", "report", "engine", *TEAMS},
    "pipelines": {"pipelines", "report", "engine", *TEAMS},
    "report": {"report", "engine"},
    "engine": {"engine"},
    **{team: {team, "engine"} for team in TEAMS},
}


def violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} ({layer(m)}) imports {d} ({layer(d)})"
        for m, deps in graph.items()
        for d in deps
        if layer(d) not in ALLOWED[layer(m)]
    )


def test_every_import_goes_down_the_layers():
    bad = violations(imports())
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    graph = imports()
    # A package's __init__ importing its own submodules is how registries fill; not a cycle.
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in edges[m]:
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(d) :], d]))
            if d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rule is live: a red-team module reading the blue team's supervisor is reported, even
    when the import hides inside a function."""
    pkg = tmp_path / "sandbag"
    for sub in ("redteam", "supervision"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "supervision" / "weak.py").write_text("X = 1\n")
    (pkg / "redteam" / "organisms.py").write_text("def f():\n    from sandbag.supervision.weak import X\n")
    assert violations(imports(pkg)) == [
        "sandbag.redteam.organisms (redteam) imports sandbag.supervision.weak (supervision)"
    ]


def test_the_command_line_starts_without_the_heavy_analysis_libraries():
    """scikit-learn, scipy.stats and matplotlib load where they are used (sandbag/detect/game.py):
    together about 1.5 s that every run, even one stopped by bad input, would pay at start."""
    import subprocess
    import sys

    heavy = ("sklearn", "scipy.stats", "matplotlib")
    code = f"import sys, sandbag.run; print(*[m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == [], f"imported when sandbag.run is: {out.strip()}"
