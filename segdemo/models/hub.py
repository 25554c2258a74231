"""Hugging Face Hub: models served from a Hub model repo, and the folder a fine-tuned model is pushed as.

A Hub model repo in segdemo's format holds `model.keras`, its card `model.json` (classes, colours, input
size, metrics, ...) and a generated `README.md` with model-card metadata. Set

    SEGDEMO_HUB_REPO=owner/name          (optionally SEGDEMO_HUB_REVISION=branch, tag or commit)

and the app serves that model under its card's name (replacing a bundled model of the same name). Files go
through `huggingface_hub`'s cache. When the Hub cannot be reached (offline, unknown repo, timeout), the app
logs one line and keeps the bundled weights; the download is bounded by HUB_TIMEOUT_SECONDS.
"""

import json
import logging
import re
import shutil
import threading
from pathlib import Path

from segdemo.config import AppConfig
from segdemo.errors import InputError
from segdemo.models import cards

HUB_TIMEOUT_SECONDS = 15.0
MODEL_FILE = "model.keras"
CARD_FILE = "model.json"
README_FILE = "README.md"
LIBRARY_NAME = "keras"

log = logging.getLogger(__name__)


HF_PREFIX = "hf://"  # a Hub repository where a model path is taken (command line, SEGDEMO_MODELS)
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")  # the Hub's rule: no leading . or -


def is_hub_uri(text):
    """Whether `text` names a Hub repository (hf://owner/name) rather than a file."""
    return str(text).startswith(HF_PREFIX)


def check_repo_id(value, what="Repository id"):
    """`value` stripped when it is a Hub repo or Space id (owner/name), else InputError saying the form."""
    value = (value or "").strip()
    if not REPO_ID.fullmatch(value):
        raise InputError(f"{what} {value!r} is not of the form owner/name (letters, digits, - _ .)")
    return value


def within(timeout, fetch, name):
    """`fetch()`'s result, run on a thread so a Hub that does not answer costs `timeout` s at most; raises what
    it raised, or TimeoutError."""
    result = {}

    def run():
        try:
            result["value"] = fetch()
        except Exception as error:  # noqa: BLE001 - re-raised below, in the caller's thread
            result["error"] = error

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no answer from the Hub within {timeout:.0f}s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def download_model(repo_id, revision=None, timeout=HUB_TIMEOUT_SECONDS, cache_dir=None):
    """Fetch model.keras and model.json of a Hub repo (through the library's cache, so HF_HUB_OFFLINE=1
    resolves a populated cache). Returns the local model path; raises on failure or after `timeout` s."""
    from huggingface_hub import hf_hub_download

    def fetch():
        paths = [hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir,
                                 etag_timeout=min(10.0, timeout), library_name="segdemo")
                 for name in (CARD_FILE, MODEL_FILE)]
        return Path(paths[1])

    return within(timeout, fetch, "hub-download")


def hub_models(repo_id, revision=None):
    """{card name: local model path} of the model in the Hub repo `repo_id` (SEGDEMO_HUB_REPO), or {} (with one
    log line) when none is configured or it cannot be fetched."""
    if not repo_id:
        return {}
    try:
        path = download_model(repo_id, revision)
        name = cards.ModelCard.load(path).name
    except Exception as error:  # noqa: BLE001 - any failure means: keep the bundled weights
        log.warning("Hub model %s%s unavailable (%s: %s); using the bundled weights", repo_id,
                    f"@{revision}" if revision else "", type(error).__name__, str(error).splitlines()[0][:200])
        return {}
    log.info("serving model %r from the Hub repo %s (%s)", name, repo_id, path.parent)
    return {name: path}


def model_card_readme(card, repo_id=None):
    """README.md for a Hub model repo: YAML metadata the Hub indexes, then the card's markdown."""
    metrics = next(iter(card.metrics.values()), {}) or {}
    metadata = {
        "library_name": LIBRARY_NAME,
        "pipeline_tag": "image-segmentation",
        "tags": ["image-segmentation", "semantic-segmentation", "unet", "keras", "segdemo"],
        "license": (card.license or "mit"),
    }
    if card.base_model:
        metadata["base_model"] = card.base_model if "/" in card.base_model else None
    if card.datasets:
        metadata["datasets"] = card.datasets
    if metrics.get("miou") is not None:
        metadata["model-index"] = [{
            "name": repo_id or card.name,
            "results": [{
                "task": {"type": "image-segmentation", "name": "Semantic segmentation"},
                "dataset": {"type": "custom", "name": card.training.get("data", "held-out pairs")[:200]},
                "metrics": [
                    {"type": "mean_iou", "value": metrics["miou"], "name": "mean IoU"},
                    {"type": "accuracy", "value": metrics["pixel_acc"], "name": "pixel accuracy"},
                    {"type": "dice", "value": metrics["mdice"], "name": "mean Dice"},
                ],
            }],
        }]
    metadata = {key: value for key, value in metadata.items() if value is not None}
    usage = (f"\n## Use\n\nIn segdemo: `SEGDEMO_HUB_REPO={repo_id or '<this repo>'} python app.py`. Elsewhere: "
             "`keras.saving.load_model('model.keras')` takes RGB images in 0..255 at the card's input size and "
             "returns per-pixel class logits (classes and colours in `model.json`).\n")
    return "---\n" + json.dumps(metadata, indent=1) + "\n---\n\n" + card.markdown() + usage


def build_push_folder(model_path, folder, repo_id=None):
    """Lay out a model file and its card as a Hub repo folder: model.keras, model.json, README.md."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card = cards.ModelCard.load(model_path)
    shutil.copyfile(model_path, folder / MODEL_FILE)
    (folder / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    (folder / README_FILE).write_text(model_card_readme(card, repo_id))
    return folder


def push_folder(folder, repo_id, token):
    """Create (if needed) the model repo and upload the folder. The token is used for this call only and
    never logged; error messages are scrubbed of it. Returns the repo URL."""
    from huggingface_hub import HfApi

    if not token:
        raise PermissionError("a Hugging Face token with write access is needed (field or HF_TOKEN)")
    try:
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                          commit_message="Upload a segdemo fine-tuned model")
    except Exception as error:  # noqa: BLE001 - re-raised without the token
        raise RuntimeError(str(error).replace(token, "***")[:500]) from None
    return f"https://huggingface.co/{repo_id}"


HUB_MODELS_DIR = AppConfig.from_environment().cache_dir / "hub"


def keras_repo_model(uri, timeout=HUB_TIMEOUT_SECONDS):
    """(a local model path to serve for `hf://owner/name`, whether a card is beside it): the repository
    fetched through `huggingface_hub`'s cache (bounded wait). A repository in segdemo's format (model.keras +
    model.json) is served as it is; one in Keras 3's own layout (`model.save("hf://owner/name")`: config.json
    + model.weights.h5) is linked from HUB_MODELS_DIR, where its card goes (app.py writes it with segdemo.card
    from the options given after the URI). Raises on failure."""
    from huggingface_hub import snapshot_download

    repo_id = check_repo_id(uri[len(HF_PREFIX):], "Hub repository")
    folder = within(timeout, lambda: Path(snapshot_download(repo_id, library_name="segdemo",
                                                            etag_timeout=min(10.0, timeout))), "hub-snapshot")
    if (folder / MODEL_FILE).is_file() and (folder / CARD_FILE).is_file():
        return folder / MODEL_FILE, True
    if not (folder / "config.json").is_file():
        raise ValueError(f"{uri} holds neither {MODEL_FILE} + {CARD_FILE} nor a Keras model (config.json)")
    link = HUB_MODELS_DIR / repo_id.replace("/", "__")
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(folder, target_is_directory=True)
    return link, cards.card_path(link).exists()
