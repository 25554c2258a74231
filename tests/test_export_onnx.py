"""The ONNX export: ONNX Runtime's labels agree with Keras's on a bundled model; the CLI's format and path
checks; a clear error when the converter is missing."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from segdemo import export
from segdemo.models.cards import ModelCard
from tests.export_helpers import onnx_predict
from tests.helpers import blocky_image

ROOT = Path(__file__).resolve().parent.parent
MODEL = "membranes"  # the smallest bundled model
MIN_AGREEMENT = 0.99


@pytest.mark.slow
def test_onnx_export_matches_keras(tmp_path, rng, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime (requirements-dev.txt) checks the export")
    from segdemo.data.images import load_image, resize_image
    from segdemo.serving import registry

    started = time.perf_counter()
    export.main(["--model", MODEL, "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    seconds = time.perf_counter() - started
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["out"] == str(tmp_path / "m.onnx") and "RGB 0..255" in printed["input"]
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["name"] == MODEL and card["export"] == export.export_io(ModelCard.load(tmp_path / "m.onnx"), ".onnx")

    segmenter = registry.get_segmenter(MODEL)
    width, height = segmenter.size
    images = [blocky_image(rng, height, width, block) for block in (8, 32)]
    images.append(resize_image(load_image(ROOT / "examples" / "synthetic_membranes.png"), segmenter.size))
    batch = np.stack(images).astype(np.float32)  # as the Segmenter feeds the model: float RGB in 0..255
    onnx_labels = onnx_predict(tmp_path / "m.onnx", batch).argmax(-1)  # one call: the batch is dynamic
    keras_labels = np.asarray(segmenter.model(batch, training=False)).argmax(-1)
    agreement = (onnx_labels == keras_labels).mean(axis=(1, 2))
    print(f"ONNX export {seconds:.1f} s; argmax agreement per image {np.round(agreement, 5).tolist()}")
    assert agreement.min() >= MIN_AGREEMENT
    assert len(np.unique(keras_labels)) == len(segmenter.classes)  # both classes occur: not a trivial match


def test_format_and_out_must_agree():
    assert export.output_path(None, "onnx", "pets") == Path("pets.onnx")
    assert export.output_path(None, None, "weights/pets.keras") == Path("pets.tflite")
    assert export.output_path("x/m.onnx", None, "pets") == Path("x/m.onnx")
    with pytest.raises(ValueError, match=r"does not end in \.onnx"):
        export.output_path("m.tflite", "onnx", "pets")


def test_cli_refuses_a_mismatched_format(capsys):
    with pytest.raises(SystemExit) as exited:
        export.main(["--model", MODEL, "--format", "onnx", "--out", "m.keras"])
    assert exited.value.code == 2 and "does not end in .onnx" in capsys.readouterr().err


def test_missing_converter_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import raises ImportError
    with pytest.raises(RuntimeError, match="ONNX export needs tf2onnx"):
        export.export_onnx(None, 32, tmp_path / "m.onnx")


def test_an_unknown_suffix_names_the_formats(tmp_path):
    with pytest.raises(ValueError, match=r"\.tflite, \.onnx, \.keras, not '\.pt'"):
        export.export_model(None, tmp_path / "m.pt")
