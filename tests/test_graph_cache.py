"""The frozen-graph cache between starts (serving/graph_cache.py): a miss builds and stores, a hit serves the same
masks without loading the Keras model, a stale key is another entry, a corrupt or refused entry is rebuilt; and
the start-up order: the spare fine-tune worker waits for the first answer."""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from segdemo import compat
from segdemo.app.startup import BackgroundStartup, after_first_answer
from segdemo.models.cards import ModelCard
from segdemo.serving import graph_cache
from segdemo.serving.graph_cache import GraphCache
from segdemo.serving.registry import load_segmenter


@pytest.fixture
def image(rng):
    return rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)


def entries(folder):
    return sorted(path.name.split("-", 1)[1] for path in Path(folder).glob("*") if not path.name.startswith("."))


def test_miss_builds_and_stores_then_a_hit_serves_without_the_model(tiny_base, tmp_path, image):
    built = load_segmenter(tiny_base, cache_dir=tmp_path)
    assert built._model is not None  # a miss: loaded from the file, traced, frozen
    assert entries(tmp_path) == ["single.graphdef", "single.json"]
    built.predict_batch([image])
    assert entries(tmp_path) == ["batch.graphdef", "batch.json", "single.graphdef", "single.json"]

    cached = load_segmenter(tiny_base, cache_dir=tmp_path)
    assert cached._model is None  # a hit: no model file read
    assert cached.grid == built.grid == (32, 32)
    first, second = built.predict(image), cached.predict(image)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_allclose(first.probs, second.probs, atol=1e-6)
    batch = cached.predict_batch([image, image[:20]])  # the batch graph from the cache too
    np.testing.assert_array_equal(batch[0].labels, first.labels)
    assert cached._model is None
    assert cached.model.count_params() == built.model.count_params()  # loaded when something needs it


def test_a_key_changes_with_the_model_file_card_and_tta(tiny_base, tmp_path):
    card = ModelCard.load(tiny_base)
    key = GraphCache(tmp_path, tiny_base, card, False).key
    assert GraphCache(tmp_path, tiny_base, card, False).key == key
    assert GraphCache(tmp_path, tiny_base, card, True).key != key
    assert GraphCache(tmp_path, tiny_base, card.replace(classes=["bg", "other"]), False).key != key
    copy = tmp_path / "copy.keras"
    copy.write_bytes(Path(tiny_base).read_bytes() + b"\0")  # other bytes: another model
    assert GraphCache(tmp_path, copy, card, False).key != key


def test_a_stale_entry_is_not_read(tiny_base, tmp_path, monkeypatch):
    load_segmenter(tiny_base, cache_dir=tmp_path)
    monkeypatch.setattr(graph_cache, "CACHE_FORMAT", graph_cache.CACHE_FORMAT + 1)  # as a new TensorFlow would
    rebuilt = load_segmenter(tiny_base, cache_dir=tmp_path)
    assert rebuilt._model is not None
    assert len(entries(tmp_path)) == 4  # the old entry beside the new one


@pytest.fixture(scope="module")
def stored_entry(tiny_base, tmp_path_factory):
    """(a cache folder holding tiny_base's entry, the labels it gives a fixed image): built once, copied by each
    test that damages it."""
    folder = tmp_path_factory.mktemp("graphs")
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    return folder, image, load_segmenter(tiny_base, cache_dir=folder).predict(image).labels


@pytest.mark.parametrize("damage", ["garbage", "truncated", "meta"])
def test_a_corrupt_entry_is_rebuilt_not_fatal(tiny_base, tmp_path, stored_entry, damage):
    folder, image, expected = stored_entry
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    graph = next(tmp_path.glob("*-single.graphdef"))
    meta = graph.with_suffix(".json")
    if damage == "garbage":
        graph.write_bytes(b"not a graph" * 100)
    elif damage == "truncated":
        graph.write_bytes(graph.read_bytes()[:1000])
    else:
        meta.write_text("{not json")
    segmenter = load_segmenter(tiny_base, cache_dir=tmp_path)
    assert segmenter._model is not None  # built again from the model file
    np.testing.assert_array_equal(segmenter.predict(image).labels, expected)
    assert load_segmenter(tiny_base, cache_dir=tmp_path)._model is None  # and stored again


def test_an_entry_with_an_op_that_runs_python_or_reads_files_is_refused(tiny_base, tmp_path):
    card = ModelCard.load(tiny_base)
    cache = GraphCache(tmp_path, tiny_base, card, False)
    graph_def = tf.compat.v1.GraphDef()
    graph_def.node.add(name="x", op="Placeholder")
    graph_def.node.add(name="y", op="PyFunc", input=["x"])
    data = graph_def.SerializeToString()
    graph_path, meta_path = cache._paths("single")
    graph_path.write_bytes(data)
    import hashlib

    meta_path.write_text(json.dumps({"grid": [32, 32], "inputs": ["x:0"], "outputs": ["y:0"],
                                     "sha256": hashlib.sha256(data).hexdigest()}))
    assert cache.load("single") is None
    assert not graph_path.exists() and not meta_path.exists()


def test_the_spare_worker_waits_for_the_first_answer():
    startup = BackgroundStartup()
    startup.expect("pets")  # the model is loading
    started = threading.Event()
    thread = threading.Thread(target=after_first_answer, args=(startup, started.set, 30), daemon=True)
    thread.start()
    assert not started.wait(0.2)
    startup.done.set()  # the model is loaded: still no request answered
    assert not started.wait(0.3)
    startup.first_answer()
    assert started.wait(5)
    thread.join(5)


def test_the_spare_worker_starts_after_a_delay_when_nobody_asks():
    startup = BackgroundStartup()  # nothing expected: done
    started = threading.Event()
    threading.Thread(target=after_first_answer, args=(startup, started.set, 0.2), daemon=True).start()
    assert started.wait(5)


def test_tensorflow_still_ends_its_import_with_the_keras_import_we_skip():
    source = (Path(tf.__file__).parent / "__init__.py").read_text()
    assert f'importlib.import_module("{compat.KERAS_EAGER_IMPORT}")' in source, \
        f"checked against TensorFlow {compat.CHECKED_TENSORFLOW}, installed {tf.__version__}"


@pytest.mark.slow
def test_tensorflow_without_keras_then_keras_whole():
    code = ("import sys; from segdemo.compat import import_tensorflow_without_keras as load; tf = load(); "
            "assert 'keras' not in sys.modules and 'keras.src.optimizers' not in sys.modules; "
            "print(float(tf.reduce_sum(tf.constant([1.0, 2.0])))); import keras; print(keras.optimizers.Adam.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.split()
    assert out == ["3.0", "Adam"]


def test_the_cache_folder_is_configured_and_handed_to_the_worker(tmp_path):
    from segdemo.config import GRAPH_CACHE_DIR, AppConfig

    assert AppConfig.from_environment({}).graph_cache_dir == GRAPH_CACHE_DIR
    assert AppConfig.from_environment({"SEGDEMO_GRAPH_CACHE": "off"}).graph_cache_dir is None
    config = AppConfig.from_environment({"SEGDEMO_GRAPH_CACHE": str(tmp_path)})
    assert config.graph_cache_dir == tmp_path
    assert AppConfig.from_environment(config.environment()).graph_cache_dir == tmp_path
    assert AppConfig.from_environment(config.replace(graph_cache_dir=None).environment()).graph_cache_dir is None
    ignored = (GRAPH_CACHE_DIR.parent.parent / ".gitignore").read_text().split()
    assert ".cache/graphs/" in ignored or ".cache/" in ignored


def test_no_cache_folder_no_cache(tiny_base, image):
    segmenter = load_segmenter(tiny_base, cache_dir=False)
    assert segmenter.cache is None and segmenter._model is not None
    assert segmenter.predict(image).labels.shape == image.shape[:2]


def test_what_the_docs_quote_from_the_code():
    from segdemo.config import GRAPH_CACHE_DIR, GRAPH_CACHE_ENV, PROJECT_ROOT
    from segdemo.limits import SPARE_WORKER_DELAY_S

    performance = " ".join((PROJECT_ROOT / "docs" / "performance.md").read_text().split())
    folder = GRAPH_CACHE_DIR.relative_to(PROJECT_ROOT).as_posix()
    from segdemo.app.startup import HANDOVER_DELAY_S, HANDOVER_QUIET_S
    from segdemo.config import MODEL_PROCESS_ENV

    for fact in (f"`SPARE_WORKER_DELAY_S` ({SPARE_WORKER_DELAY_S} s)", f"`{folder}/`", f"`{GRAPH_CACHE_ENV}=DIR`",
                 "(`REFUSED_OPS`)", f"`HANDOVER_QUIET_S` ({HANDOVER_QUIET_S} s)",
                 f"`HANDOVER_DELAY_S` ({HANDOVER_DELAY_S} s)", f"`{MODEL_PROCESS_ENV}=off`"):
        assert fact in performance, fact
    assert "PyFunc" in graph_cache.REFUSED_OPS and "ReadFile" in graph_cache.REFUSED_OPS
