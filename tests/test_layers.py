"""The package's structure stays as it is left: no import cycles inside segdemo/ (module-level or inside
functions), nothing below segdemo/ui/ imports the UI or Gradio, and the serving core imports without Gradio."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "segdemo"
WEB_MODULES = ("gradio", "gradio_client", "fastapi", "starlette")
# The layers, lowest first (docs/architecture.md draws them): a module imports its own layer and those below,
# never one above. A new module is placed here, or this test fails.
LAYERS = {
    "foundation": {"segdemo", "segdemo.lazy", "segdemo.limits", "segdemo.png", "segdemo.cards", "segdemo.data",
                   "segdemo.metrics"},
    "model": {"segdemo.drawing", "segdemo.runtime", "segdemo.segmenter", "segdemo.models", "segdemo.losses",
              "segdemo.augment", "segdemo.uploads", "segdemo.corrections", "segdemo.model_files",
              "segdemo.model_inspect", "segdemo.model_preprocessing"},
    "pipelines": {"segdemo.registry", "segdemo.hub", "segdemo.serving", "segdemo.batch", "segdemo.compare",
                  "segdemo.evaluate", "segdemo.export", "segdemo.training", "segdemo.train", "segdemo.deploy",
                  "segdemo.card", "segdemo.finetune", "segdemo.finetune.options", "segdemo.finetune.events",
                  "segdemo.finetune.probe", "segdemo.finetune.scoring", "segdemo.finetune.recipe",
                  "segdemo.finetune.__main__", "segdemo.finetune.adapt"},
    "app state": {"segdemo.startup", "segdemo.sessions", "segdemo.finetune_worker", "segdemo.jobs",
                  "segdemo.uploaded_models"},
    "ui": {"segdemo.ui"},  # and every segdemo.ui.* module
}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path, known):
    """The modules of `known` that `path` imports anywhere in its body (functions included): `from a.b import
    c` counts as a.b.c when that is a module, else a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph():
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {name: imported_modules(path, known) - {name} - {"segdemo"} for name, path in paths.items()}


def find_cycle(graph):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def layer_of(module):
    ranks = list(LAYERS)
    if module.startswith("segdemo.ui"):
        return ranks.index("ui")
    return next((ranks.index(name) for name, modules in LAYERS.items() if module in modules), None)


def test_every_import_goes_down_or_across_the_layers():
    graph = import_graph()
    unplaced = sorted(module for module in graph if layer_of(module) is None)
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"
    upward = [f"{module} ({list(LAYERS)[layer_of(module)]}) -> {target} ({list(LAYERS)[layer_of(target)]})"
              for module, targets in graph.items() for target in targets if layer_of(target) > layer_of(module)]
    assert not upward, upward


def test_core_never_imports_the_ui_or_the_web():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "ui" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.split(".")[0] in WEB_MODULES or name.startswith("segdemo.ui"):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}: {name}")
    assert not offenders, offenders


def test_serving_core_imports_without_gradio():
    """In a fresh process: the serving pipeline, the job service and the session state load without Gradio."""
    code = ("import sys; import segdemo.serving, segdemo.batch, segdemo.compare, segdemo.sessions, segdemo.jobs; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'gradio', 'gradio_client'}))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]", loaded
