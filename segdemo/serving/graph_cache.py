"""Frozen serving graphs kept on disk between starts, so a start that has served a model before does not import
Keras, load the model file, trace and freeze it again (about 4-6 s of a cold start on 2 cores; see
docs/performance.md): it reads the frozen `GraphDef` and wraps it as a TensorFlow function.

An entry is keyed by everything that shapes the graph: the model file's bytes (SHA-256), its card, test-time
augmentation, what the graph is for (one image or a batch), TensorFlow's version, the source of the modules that
build the graph, and CACHE_FORMAT. A change in any of them is another key: the stale entry is not read and a
new one is built (old files are left to `prune`). An entry that cannot be read (missing half, wrong checksum,
unparsable, a refused op) is removed and rebuilt, never an error.

What a cached graph can do: a `GraphDef` is data (protocol buffers: nodes naming TensorFlow's own registered
kernels and constants), read only from this app's own cache folder; no pickle, nothing executed on load. Ops that
call back into Python or touch files (`REFUSED_OPS`) are refused, so an entry written by someone else could at
worst compute wrong masks, never run code."""

import hashlib
import json
import logging
import os
from pathlib import Path

from segdemo.compat import LazyModule

tf = LazyModule("tensorflow")

CACHE_FORMAT = 2
GRAPH_SUFFIX, META_SUFFIX = ".graphdef", ".json"
# the code a serving graph is built from: editing it makes every entry stale
SOURCES = ("segmenter.py", "graph_cache.py", "../models/preprocessing.py", "../models/resizing.py",
           "../models/facts.py")
REFUSED_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc", "ReadFile", "WriteFile", "MatchingFiles",
                         "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "ImmutableConst"})

log = logging.getLogger(__name__)
_file_hashes = {}  # (path, size, mtime) -> sha256: a model file is hashed once per process


def file_digest(path):
    """SHA-256 of a model file, or of a model folder's files (relative names and bytes)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for item in files:
        stat = item.stat()
        memo = (str(item), stat.st_size, stat.st_mtime_ns)
        if memo not in _file_hashes:
            file_hash = hashlib.sha256()
            with open(item, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    file_hash.update(block)
            _file_hashes[memo] = file_hash.hexdigest()
        digest.update(item.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        digest.update(_file_hashes[memo].encode())
    return digest.hexdigest()


def source_digest():
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in SOURCES:  # one that is not there (moved, renamed) counts as its name only
        path = here / name
        digest.update(path.read_bytes() if path.is_file() else name.encode())
    return digest.hexdigest()


class GraphCache:
    """The cached graphs of one model file served with one card and `tta`. `load(kind)` gives the frozen
    function or None; `save(kind, frozen, grid)` stores one; `grid()` is the model's output grid as stored."""

    def __init__(self, folder, model_path, card, tta):
        self.folder = Path(folder)
        parts = {"format": CACHE_FORMAT, "tensorflow": tf.__version__, "model": file_digest(model_path),
                 "card": card.to_dict(), "tta": bool(tta), "sources": source_digest()}
        self.key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
        self.model_name = Path(str(model_path).rstrip("/")).name

    def _paths(self, kind):
        stem = self.folder / f"{self.key}-{kind}"
        return stem.with_suffix(GRAPH_SUFFIX), stem.with_suffix(META_SUFFIX)

    def _meta(self, kind):
        try:
            return json.loads(self._paths(kind)[1].read_text())
        except (OSError, ValueError):
            return None

    def grid(self):
        """(width, height) of the output grid, from the single-image entry's meta (None: no entry)."""
        meta = self._meta("single")
        try:
            return tuple(int(value) for value in meta["grid"]) if meta else None
        except (KeyError, TypeError, ValueError):
            return None

    def load(self, kind):
        """The cached frozen function for `kind`, or None (no entry; an unreadable one is removed)."""
        graph_path, meta_path = self._paths(kind)
        meta = self._meta(kind)
        if meta is None:
            return None
        try:
            data = graph_path.read_bytes()
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise ValueError("checksum mismatch")
            graph_def = tf.compat.v1.GraphDef.FromString(data)
            refused = sorted({node.op for node in graph_def.node} & REFUSED_OPS)
            refused += sorted({node.op for function in graph_def.library.function for node in function.node_def}
                              & REFUSED_OPS)
            if refused:
                raise ValueError(f"refused ops {refused}")
            return wrap_graph(graph_def, meta["inputs"], meta["input_specs"], meta["outputs"])
        except Exception as error:  # noqa: BLE001 - a bad entry is rebuilt, never fatal
            log.warning("graph cache: entry %s for %s unreadable (%s); rebuilding it", graph_path.name,
                        self.model_name, error)
            for path in (meta_path, graph_path):
                path.unlink(missing_ok=True)
            return None

    def clear(self):
        """Remove this model's entries (a graph that loaded but does not run)."""
        for path in self.folder.glob(f"{self.key}-*"):
            path.unlink(missing_ok=True)

    def save(self, kind, frozen, grid):
        """Store a frozen concrete function (written to temporary files, then renamed: the meta last, so a
        half-written entry is never read as whole). A failure to write is logged, not raised."""
        graph_path, meta_path = self._paths(kind)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            data = frozen.graph.as_graph_def().SerializeToString()
            meta = {"format": CACHE_FORMAT, "model": self.model_name, "kind": kind, "grid": list(grid),
                    "inputs": [tensor.name for tensor in frozen.inputs],
                    "input_specs": [[tensor.shape.as_list(), tensor.dtype.name] for tensor in frozen.inputs],
                    "outputs": [tensor.name for tensor in frozen.outputs], "sha256": hashlib.sha256(data).hexdigest()}
            for path, content in ((graph_path, data), (meta_path, json.dumps(meta).encode())):
                temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                temporary.write_bytes(content)
                os.replace(temporary, path)
        except OSError as error:
            log.warning("graph cache: could not write %s (%s); serving without it", graph_path, error)


def wrap_graph(graph_def, inputs, input_specs, outputs):
    """A callable TensorFlow function of the imported `graph_def`, from the tensors named `inputs` (of
    `input_specs`: [shape, dtype name] each) to those named `outputs` (it returns a list, in that order). The
    inputs are mapped onto the function's arguments while importing (0.2 s for the pets graph; importing it
    whole, then `prune`, took 1 s)."""
    specs = [tf.TensorSpec(shape, tf.as_dtype(dtype)) for shape, dtype in input_specs]

    def imported(*arguments):
        return tf.compat.v1.import_graph_def(graph_def, input_map=dict(zip(inputs, arguments)),
                                             return_elements=list(outputs), name="")

    return tf.compat.v1.wrap_function(imported, specs)
