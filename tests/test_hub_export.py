"""Spaces front matter, Hub-sourced models (offline, against a real cache layout), the push folder, token
hygiene, and the TFLite export."""

import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from segdemo.config import AppConfig
from segdemo.data.images import load_image, resize_image
from segdemo.models import hub
from segdemo.models.architectures import build_unet
from segdemo.models.cards import ModelCard
from segdemo.serving import registry

ROOT = Path(__file__).resolve().parent.parent
SPACES_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
HUB_REPO = "segdemo-test/tiny-squares"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SECRET = "hf_NotARealTokenButSecret1234567890"


def front_matter(text):
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "no front matter block at the top"
    return yaml.safe_load(match.group(1))


def test_readme_has_valid_spaces_front_matter():
    meta = front_matter((ROOT / "README.md").read_text())
    pins = dict(re.findall(r"^([\w-]+)(?:\[[\w,]+\])?==([\w.]+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == pins["gradio"]
    assert (ROOT / meta["app_file"]).is_file() and meta["app_file"] == "app.py"
    assert str(meta["python_version"]) == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert meta["colorFrom"] in SPACES_COLORS and meta["colorTo"] in SPACES_COLORS
    assert meta["title"] and len(meta["emoji"]) == 1
    assert meta["license"] == "mit" and "MIT License" in (ROOT / "LICENSE").read_text()
    assert len(meta.get("short_description", "")) <= 60


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "squares.keras"
    build_unet(2, depth=2, base_filters=4).save(path)
    ModelCard.from_dict({"name": "squares-hub", "title": "Squares from the Hub", "classes": ["background", "square"],
                         "colors": [[0, 0, 0], [0, 200, 0]], "input_size": 32, "architecture": "unet",
                         "metrics": {"held-out (after)": {"pixel_acc": 0.9, "miou": 0.8, "mdice": 0.85, "images": 2}}}
                        ).save(path)
    return path


@pytest.fixture
def hub_cache(tmp_path, tiny_model, monkeypatch):
    """A Hub cache in huggingface_hub's own layout holding HUB_REPO at COMMIT, as a download leaves it."""
    folder = hub.build_push_folder(tiny_model, tmp_path / "push", HUB_REPO)
    repo_dir = tmp_path / "cache" / f"models--{HUB_REPO.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        shutil.copy(file, snapshot / file.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    previous = registry.current_config()
    registry.resolved_hub_models.cache_clear()
    registry.models_of.cache_clear()
    yield tmp_path / "cache"
    registry.resolved_hub_models.cache_clear()
    registry.models_of.cache_clear()
    registry.configure(previous)


def test_hub_model_resolves_offline_from_the_cache(hub_cache, monkeypatch):
    snapshot = hub_cache / "models--segdemo-test--tiny-squares" / "snapshots" / COMMIT
    assert hub.download_model(HUB_REPO) == snapshot / "model.keras"
    registry.configure(AppConfig(hub_repo=HUB_REPO))
    models = registry.served_models()
    assert "squares-hub" in models and "pets" in models
    segmenter = registry.get_segmenter("squares-hub")
    assert segmenter.card.title == "Squares from the Hub"
    assert segmenter.predict(np.zeros((10, 20, 3), np.uint8)).labels.shape == (10, 20)


def test_unreachable_hub_falls_back_with_one_log_line(hub_cache, monkeypatch, caplog):
    registry.configure(AppConfig(hub_repo="nobody/missing-repo", hub_revision="v1"))
    with caplog.at_level(logging.WARNING, logger="segdemo.models.hub"):
        models = registry.served_models()
    assert "pets" in models and "squares-hub" not in models
    lines = [r.getMessage() for r in caplog.records if r.name == "segdemo.models.hub"]
    assert len(lines) == 1 and "nobody/missing-repo@v1 unavailable" in lines[0] and "bundled weights" in lines[0]


def test_push_folder_holds_model_card_and_metadata(tiny_model, tmp_path):
    folder = hub.build_push_folder(tiny_model, tmp_path / "push", "someone/squares")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "model.json", "model.keras"]
    meta = front_matter((folder / "README.md").read_text())
    assert meta["library_name"] == "keras" and "image-segmentation" in meta["tags"]
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"mean_iou": 0.8, "accuracy": 0.9, "dice": 0.85}
    assert ModelCard.load(folder / "model.keras").classes == ["background", "square"]
    segmenter = registry.get_segmenter(str(folder / "model.keras"))
    assert segmenter.predict(np.zeros((8, 8, 3), np.uint8)).labels.shape == (8, 8)


def test_push_never_shows_or_logs_the_token(tiny_model, tmp_path, caplog):
    folder = hub.build_push_folder(tiny_model, tmp_path / "push")
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(RuntimeError) as raised:
            hub.push_folder(folder, "someone/squares", SECRET)  # offline in tests: the call fails
    assert SECRET not in str(raised.value)
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    with pytest.raises(PermissionError, match="token"):
        hub.push_folder(folder, "someone/squares", None)


def test_push_handler_keeps_the_token_out_of_messages(tiny_model, caplog):
    import gradio as gr

    from segdemo.app import sessions
    from segdemo.ui import finetune_tab

    card = ModelCard.load(tiny_model)
    sessions.FINETUNED_MODELS.put("anonymous", sessions.SessionModel(tiny_model, card, [str(tiny_model)]))
    try:
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(gr.Error) as raised:
                finetune_tab.push_finetuned("someone/squares", SECRET)
        assert "Push to someone/squares failed" in str(raised.value) and SECRET not in str(raised.value)
        assert all(SECRET not in record.getMessage() for record in caplog.records)
        with pytest.raises(gr.Error, match="not of the form owner/name"):
            finetune_tab.push_finetuned("../etc", SECRET)
    finally:
        sessions.FINETUNED_MODELS.pop("anonymous")


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_tflite_float16_matches_keras(tmp_path):
    pytest.importorskip("ai_edge_litert", reason="LiteRT (ai-edge-litert) has no wheel for this platform")
    from segdemo.export import export_model
    from tests.export_helpers import lite_interpreter, tflite_predict

    segmenter = registry.get_segmenter("pets")
    path = export_model(segmenter, tmp_path / "pets.tflite")
    assert json.loads(path.with_suffix(".json").read_text())["classes"] == segmenter.classes
    image = resize_image(load_image(ROOT / "examples" / "chelsea_cat.png"), segmenter.size)
    lite = tflite_predict(path, image).argmax(-1)
    keras_labels = np.asarray(segmenter.model(image[None].astype(np.float32)))[0].argmax(-1)
    assert (lite == keras_labels).mean() >= 0.99
    assert path.stat().st_size < 0.6 * (ROOT / "weights" / "pets.keras").stat().st_size  # float16 weights
    assert type(lite_interpreter(path)).__module__.startswith("ai_edge_litert")  # checked by LiteRT, not tf.lite


@pytest.mark.skipif(not os.environ.get("SEGDEMO_TEST_HF_TOKEN") or os.environ.get("HF_HUB_OFFLINE") == "1",
                    reason="uploads only with SEGDEMO_TEST_HF_TOKEN (and SEGDEMO_TEST_HF_REPO) set, online")
def test_real_upload(tiny_model, tmp_path):
    repo = os.environ["SEGDEMO_TEST_HF_REPO"]
    folder = hub.build_push_folder(tiny_model, tmp_path / "push", repo)
    assert hub.push_folder(folder, repo, os.environ["SEGDEMO_TEST_HF_TOKEN"]).endswith(repo)
