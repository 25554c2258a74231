"""The package's structure stays as it is left: no import cycles inside segdemo/ (module-level or inside
functions), nothing below segdemo/ui/ imports the UI or Gradio, and the serving core imports without Gradio."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "segdemo"
WEB_MODULES = ("gradio", "gradio_client", "fastapi", "starlette")
LIBRARIES = ("keras", "tensorflow", "gradio", "gradio_client")
PRIVATE_MODULES = ("tensorflow.python", "keras.src")  # not public API: the compat modules only
# the modules allowed what is not public API: Keras's and TensorFlow's in the core, Gradio's in the UI
COMPAT = {"segdemo.compat": "compat.py", "segdemo.ui.gradio_compat": "ui/gradio_compat.py"}
# The layers, lowest first (docs/architecture.md draws them): a module imports its own layer and those below,
# never one above. A layer is a list of module prefixes; the longest matching prefix places a module, so the
# command-line entry points of a package sit above its library modules. A new package is placed here, or this
# test fails.
LAYERS = {
    "foundation": ["segdemo", "segdemo.errors", "segdemo.limits", "segdemo.config", "segdemo.compat"],
    "models": ["segdemo.models"],
    "data": ["segdemo.data"],
    "serving": ["segdemo.serving"],
    "training": ["segdemo.training"],
    "adapting": ["segdemo.card", "segdemo.finetune", "segdemo.jobqueue"],
    "app": ["segdemo.app"],
    "commands": ["segdemo.train", "segdemo.evaluate", "segdemo.export", "segdemo.deploy", "segdemo.card.cli",
                 "segdemo.card.__main__", "segdemo.finetune.__main__", "segdemo.worker"],
    "ui": ["segdemo.ui"],
}
MAX_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 400


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
    """The rank of `module`'s layer: the layer of its longest matching prefix."""
    matches = [(len(prefix), rank) for rank, prefixes in enumerate(LAYERS.values()) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1] if matches else None


def test_every_import_goes_down_or_across_the_layers():
    graph = import_graph()
    unplaced = sorted(module for module in graph if layer_of(module) is None)
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"
    upward = [f"{module} ({list(LAYERS)[layer_of(module)]}) -> {target} ({list(LAYERS)[layer_of(target)]})"
              for module, targets in graph.items() for target in targets if layer_of(target) > layer_of(module)]
    assert not upward, upward


def imported_names(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""


def test_core_never_imports_the_ui_or_the_web():
    """Below segdemo/ui/ nothing imports Gradio or the UI, anywhere in a module (functions included)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "ui" in path.relative_to(PACKAGE).parts:
            continue
        for name in imported_names(ast.parse(path.read_text())):
            if name.split(".")[0] in WEB_MODULES or name.startswith("segdemo.ui"):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}: {name}")
    assert not offenders, offenders


def own_private_names():
    """Every `_name` segdemo defines itself (functions, classes, attributes, variables, arguments)."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return {name for name in names if name.startswith("_")}


def foreign_private_uses(source, own_names):
    """`x._name` reads of a `_name` segdemo does not define, and imports of library modules that are not
    public API, in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and node.attr not in own_names):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in imported_names(ast.Module(body=[node], type_ignores=[])):
                if name.startswith(PRIVATE_MODULES) or (name.split(".")[0] in LIBRARIES
                                                         and any(part.startswith("_") for part in name.split("."))):
                    found.append(f"line {node.lineno}: import {name}")
    return found


def test_private_use_detector_sees_library_internals():
    source = ("from tensorflow.python.framework import x\nimport keras.src.models\nm._flatten_layers()\n"
              "self._mine = 1\nself._mine\n")
    assert foreign_private_uses(source, {"_mine"}) == [
        "line 1: import tensorflow.python.framework", "line 2: import keras.src.models", "line 3: ._flatten_layers"]


def test_library_internals_only_in_compat():
    """Keras and TensorFlow internals live in segdemo/compat.py, Gradio's in segdemo/ui/gradio_compat.py, and
    nowhere else (a version bump is checked there, by tests/test_compat.py)."""
    own = own_private_names()
    offenders = {str(path.relative_to(PACKAGE.parent)): uses for path in PACKAGE.rglob("*.py")
                 if module_name(path) not in COMPAT and (uses := foreign_private_uses(path.read_text(), own))}
    assert not offenders, offenders
    for file in COMPAT.values():
        assert foreign_private_uses((PACKAGE / file).read_text(), set()), f"{file} holds internals: the detector " \
                                                                           "should see them there"


def test_top_level_is_small_and_modules_short():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    long = {str(path.relative_to(PACKAGE.parent)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_serving_core_imports_without_gradio():
    """In a fresh process: the serving pipeline, the job service and the session state load without Gradio."""
    code = ("import sys; import segdemo.serving.segment, segdemo.serving.batch, segdemo.serving.compare, "
            "segdemo.app.sessions, segdemo.app.jobs, segdemo.compat; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'gradio', 'gradio_client'}))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]", loaded
