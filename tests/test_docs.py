"""The docs stay true to the code: README's size, every relative link, the limits README states against the
constants that enforce them, the models table against the cards, bench/README.md against bench/*.py, and
every docs page linked from README. Fast and offline (no ../shared, no network) except the one slow test
that runs README's API example against a launched server."""

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 200

# Where each constant the docs quote lives: name -> "module:ATTR" (dots after the colon reach attributes).
# When a module moves, change this table only.
CONSTANTS = {
    "MIN_PAIRS": "segdemo.limits:MIN_PAIRS",
    "MAX_PAIRS": "segdemo.limits:MAX_PAIRS",
    "MAX_STEPS": "segdemo.limits:MAX_STEPS",
    "MAX_BATCH_SIZE": "segdemo.limits:MAX_BATCH_SIZE",
    "MAX_INPUT_SIZE": "segdemo.limits:MAX_INPUT_SIZE",
    "MAX_BATCH_IMAGES": "segdemo.limits:MAX_BATCH_IMAGES",
    "MAX_IMAGE_PIXELS": "segdemo.limits:MAX_IMAGE_PIXELS",
    "MAX_ZIP_BYTES": "segdemo.limits:MAX_ZIP_BYTES",
    "MAX_ZIP_ENTRIES": "segdemo.limits:MAX_ZIP_ENTRIES",
    "MAX_ENTRY_BYTES": "segdemo.limits:MAX_ENTRY_BYTES",
    "LOADED_MODELS_CACHE": "segdemo.serving.registry:LOADED_MODELS_CACHE",
    "FINETUNED_SESSIONS": "segdemo.app.sessions:FINETUNED_MODELS.capacity",
    "WORKER_THREADS": "segdemo.finetune.worker:WORKER_THREADS",
    "HUB_TIMEOUT_SECONDS": "segdemo.models.hub:HUB_TIMEOUT_SECONDS",
    "MAX_MODEL_BYTES": "segdemo.limits:MAX_MODEL_BYTES",
    "MAX_UPLOADED_MODEL_BYTES": "segdemo.limits:MAX_UPLOADED_MODEL_BYTES",
    "MAX_UPLOADED_MODEL_MEMORY": "segdemo.limits:MAX_UPLOADED_MODEL_MEMORY",
    "SESSION_FILES_MAX_AGE_S": "segdemo.app.sessions:SESSION_FILES_MAX_AGE_S",
    "MAX_VIDEO_SECONDS": "segdemo.limits:MAX_VIDEO_SECONDS",
    "MAX_VIDEO_FRAMES": "segdemo.limits:MAX_VIDEO_FRAMES",
    "MAX_VIDEO_BYTES": "segdemo.limits:MAX_VIDEO_BYTES",
    "MAX_VIDEO_SIDE": "segdemo.limits:MAX_VIDEO_SIDE",
    "VIDEO_OUTPUT_MAX_SIDE": "segdemo.limits:VIDEO_OUTPUT_MAX_SIDE",
    "LIVE_MAX_SIDE": "segdemo.limits:LIVE_MAX_SIDE",
    "LIVE_TIME_LIMIT_S": "segdemo.limits:LIVE_TIME_LIMIT_S",
    "LIVE_CONCURRENCY": "segdemo.limits:LIVE_CONCURRENCY",
}

# Each limit as README's Limits section states it (whitespace collapsed), filled in from the constants above.
LIMIT_FACTS = [
    "at least {MIN_PAIRS} pairs",
    "at most {MAX_PAIRS} pairs",
    "at most {MAX_STEPS} steps",
    "batch size at most {MAX_BATCH_SIZE}",
    "input size at most {MAX_INPUT_SIZE}",
    "training set holds at most {MAX_PAIRS} pairs",
    "at most {MAX_BATCH_IMAGES} images",
    "at most {MAX_IMAGE_PIXELS_MP} megapixels",
    "at most {MAX_ZIP_MB} MB per file",
    "unpacks to at most {MAX_ZIP_MB} MB, {MAX_ZIP_ENTRIES} files and {MAX_ENTRY_MB} MB per file",
    "At most {LOADED_MODELS_CACHE} models stay loaded",
    "most {FINETUNED_SESSIONS} sessions",
    "uses {WORKER_THREADS} threads",
    "fetched for at most {HUB_TIMEOUT_S} s",
    "untouched for {SESSION_HOURS} hours",
    "lasts at most {MAX_VIDEO_SECONDS} s, has at most {MAX_VIDEO_FRAMES} frames, at most {MAX_VIDEO_MB} MB and at "
    "most {MAX_VIDEO_SIDE} px on the long side",
    "The output video is at most {VIDEO_OUTPUT_MAX_SIDE} px wide or high",
    "A webcam frame is shrunk to {LIVE_MAX_SIDE} px on its long side; a stream stops after {LIVE_TIME_LIMIT_S} s",
    "at most {LIVE_CONCURRENCY} streams run at once",
    "A model file is at most {MAX_MODEL_MB} MB (at most {MAX_UPLOADED_MODEL_MB} MB uploaded in the browser, and at "
    "most {MAX_UPLOADED_MODEL_GB} GB of estimated memory",
]


def constant(name):
    module, _, attribute = CONSTANTS[name].partition(":")
    value = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def readme():
    return README.read_text()


def section(text, heading):
    """The body of a `## heading` section of a markdown text."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section '## {heading}'"
    return match.group(1)


def doc_files():
    return [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]


def relative_links(text):
    """Targets of markdown links and images that are not URLs (anchors stripped; in-page anchors skipped)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    paths = []
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, ...
            continue
        path = target.split("#", 1)[0]
        if path:
            paths.append(path)
    return paths


def test_readme_is_short():
    lines = readme().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; the guide is at most {MAX_README_LINES}"


@pytest.mark.parametrize("doc", doc_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    assert doc.is_file(), f"{doc.relative_to(ROOT)} is missing"
    missing = [link for link in relative_links(doc.read_text()) if not (doc.parent / link).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_anchors_into_readme_exist():
    """Links like ../README.md#limits point at a heading README has (GitHub's slug rule, simplified)."""
    slugs = {re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-")
             for heading in re.findall(r"^#+ (.+)$", readme(), re.M)}
    for doc in doc_files():
        for anchor in re.findall(r"README\.md#([\w-]+)", doc.read_text()):
            assert anchor in slugs, f"{doc.relative_to(ROOT)} links to README.md#{anchor}, no such heading"


def test_limits_match_the_constants():
    values = {name: constant(name) for name in CONSTANTS}
    values.update(
        MAX_IMAGE_PIXELS_MP=values["MAX_IMAGE_PIXELS"] // 1_000_000,
        MAX_ZIP_MB=values["MAX_ZIP_BYTES"] // 1_000_000,
        MAX_ENTRY_MB=values["MAX_ENTRY_BYTES"] // 1_000_000,
        HUB_TIMEOUT_S=f"{values['HUB_TIMEOUT_SECONDS']:.0f}",
        SESSION_HOURS=values["SESSION_FILES_MAX_AGE_S"] // 3600,
        MAX_MODEL_MB=values["MAX_MODEL_BYTES"] // 1_000_000,
        MAX_UPLOADED_MODEL_MB=values["MAX_UPLOADED_MODEL_BYTES"] // 1_000_000,
        MAX_UPLOADED_MODEL_GB=f"{values['MAX_UPLOADED_MODEL_MEMORY'] / 1e9:g}",
        MAX_VIDEO_MB=values["MAX_VIDEO_BYTES"] // 1_000_000,
    )
    limits = " ".join(section(readme(), "Limits").split())  # line breaks do not matter
    wrong = [fact.format(**values) for fact in LIMIT_FACTS if fact.format(**values) not in limits]
    assert not wrong, f"README's Limits do not state these facts from the code: {wrong}"


def test_models_table_matches_the_cards():
    """Each bundled model has a row whose headline metric is its card's, and its card's input size."""
    models = section(readme(), "The models")
    cards = {path.stem: json.loads(path.read_text()) for path in sorted((ROOT / "weights").glob("*.json"))}
    assert cards, "no model cards in weights/"
    for name, card in cards.items():
        row = next((line for line in models.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row, f"README's models table has no row for {name}"
        metrics = next(iter(card["metrics"].values()))
        headline = (f"pixel error {metrics['pixel_error']}" if name == "membranes" else f"mIoU {metrics['miou']}")
        assert headline in row, f"{name}: README says {row!r}, the card has {headline}"
        width, height = (card["input_size"],) * 2 if isinstance(card["input_size"], int) else card["input_size"]
        assert f"{width}x{height}" in row, f"{name}: the card's input size is {width}x{height}"
        assert f"{len(card['classes'])}: " in row, f"{name}: the card has {len(card['classes'])} classes"


def test_every_bench_script_is_listed():
    listed = (ROOT / "bench" / "README.md").read_text()
    missing = [path.name for path in sorted((ROOT / "bench").glob("*.py")) if f"`{path.name}`" not in listed]
    assert not missing, f"bench/README.md does not list {missing}"


def test_every_docs_page_is_linked_from_readme():
    linked = {(ROOT / link).resolve() for link in relative_links(readme())}
    pages = [path for path in sorted((ROOT / "docs").glob("*.md")) if path.resolve() not in linked]
    assert not pages, f"README.md does not link {[str(path.relative_to(ROOT)) for path in pages]}"
    assert (ROOT / "bench" / "README.md").resolve() in linked


def test_quick_start_and_spaces_front_matter_kept():
    """The quick start's two commands (CI runs the second) and the Space's front matter stay at the top."""
    text = readme()
    assert text.startswith("---\ntitle: segdemo\n")
    quick = section(text, "Quick start")
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && python app.py"
            in quick)
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt "
            "-r requirements-dev.txt && python -m pytest -q" in quick)


def api_example():
    blocks = re.findall(r"```python\n(.*?)```", section(readme(), "The API and MCP"), re.S)
    assert len(blocks) == 1, "the API section holds exactly one python block"
    return blocks[0]


def test_api_example_is_a_script_with_its_url_on_one_line():
    code = api_example()
    compile(code, "README API example", "exec")
    assert re.search(r'^URL = "http://127\.0\.0\.1:7860/"$', code, re.M)
    for name in re.findall(r'"(examples/[^"]+)"', code):
        assert (ROOT / name).is_file(), f"the API example uses {name}, which does not exist"


# README's example is written to the API being built (model_name optional in add_training_pair, segment by the
# name retrain returns). Remove this mark once that change is merged; until then the test reports XFAIL/XPASS.
def test_api_example_runs(app_url, tmp_path):
    """README's API example against a launched server (slow: a server and a retrain)."""
    code = re.sub(r'^URL = ".*"$', f"URL = {app_url!r}", api_example(), flags=re.M)
    script = tmp_path / "api_example.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "held-out mean IoU after retraining" in result.stdout


def test_the_mask_suffixes_the_docs_name_are_the_ones_the_code_pairs_by():
    from segdemo.data.pairs import MASK_STEM_WORDS

    text = (ROOT / "docs" / "finetune.md").read_text()
    line = next(line for line in text.split("\n\n") if "x_mask.png" in line)
    named = set(re.findall(r"`[_-](\w+)`", line))
    assert named and named <= set(MASK_STEM_WORDS), named - set(MASK_STEM_WORDS)
