"""A user's showcase: `segdemo.card --title --description --main-class --colors --examples --clip` writes a card
whose examples and clip travel beside the model; `app.py --model M --only` builds a page about that model (its
title in the heading and the browser tab, its description, its examples), with segdemo's words in the About tab;
the bundled page is unchanged; bad showcase input is refused with a message."""

import json

import numpy as np
import pytest
from PIL import Image

from segdemo.app.showcase import INTRO, TITLE, live_clip, page_text
from segdemo.card import cli as card_command
from segdemo.config import EXAMPLES_DIR, AppConfig
from segdemo.limits import MAX_TITLE_CHARS
from segdemo.models.cards import ModelCard, example_files
from segdemo.serving.registry import configure, served_models

COLORS = [[10, 20, 30], [250, 200, 0]]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained two-class U-Net saved as a user would (no card yet)."""
    import keras

    from segdemo.models.architectures import build_unet

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("user") / "cracks.keras"
    build_unet(2, input_size=32, depth=2, base_filters=4).save(path)
    return path


@pytest.fixture
def examples(tmp_path):
    folder = tmp_path / "my_examples"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("wall.png", "road.jpg"):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / name)
    return folder


def describe(model, *options):
    card_command.main([str(model), "--classes", "background", "crack", "--input-scale", "0..1", *options])
    return ModelCard.load(model)


def test_the_card_carries_the_showcase_and_its_files_travel_beside_the_model(tiny_model, examples, tmp_path):
    description = tmp_path / "about.md"
    description.write_text("Finds **cracks** in concrete.\n")
    card = describe(tiny_model, "--title", "Road cracks", "--description", str(description), "--main-class",
                    "background", "--colors", "10,20,30", "250, 200, 0", "--examples", str(examples), "--clip",
                    str(EXAMPLES_DIR / "live_clip.mp4"))
    assert (card.title, card.description, card.default_class, card.colors) == (
        "Road cracks", "Finds **cracks** in concrete.", "background", COLORS)
    assert card.shown_class == "background"
    folder = tiny_model.parent / "cracks_examples"
    assert sorted(card.examples) == ["cracks_examples/road.jpg", "cracks_examples/wall.png"]
    assert card.clip == "cracks_examples/live_clip.mp4"
    assert sorted(path.name for path in folder.iterdir()) == ["live_clip.mp4", "road.jpg", "wall.png"]
    found = example_files(card, tiny_model)
    assert [path.parent for path in found] == [folder.resolve()] * 2
    assert (folder / "wall.png").read_bytes() == (examples / "wall.png").read_bytes()
    # the text itself works as a description too
    assert describe(tiny_model, "--description", "Cracks, *found*.").description == "Cracks, *found*."


@pytest.mark.parametrize("options, message", [
    (["--title", "x" * 10_000], f"1 to {MAX_TITLE_CHARS} characters"),
    (["--colors", "red", "0,0,0"], "'red' is not a colour"),
    (["--colors", "0,0,0"], "1 colour(s) for 2 classes"),
    (["--colors", "0,0,300", "0,0,0"], "'0,0,300' is not a colour"),
    (["--main-class", "pothole"], "--main-class 'pothole' is not one of the classes"),
    (["--description", "missing_file.md"], "not a readable UTF-8 text file"),
    (["--clip", "nowhere.mp4"], "--clip nowhere.mp4: no such file"),
])
def test_bad_showcase_options_are_refused_with_what_is_accepted(tiny_model, options, message, capsys):
    before = ModelCard.load(tiny_model) if tiny_model.with_suffix(".json").exists() else None
    with pytest.raises(SystemExit) as error:
        describe(tiny_model, *options)
    assert message in str(error.value) and str(error.value).startswith("segdemo.card:")
    assert (ModelCard.load(tiny_model) if before else None) == before  # the card is not rewritten


def test_an_examples_folder_with_other_files_is_refused_naming_them(tiny_model, examples):
    (examples / "notes.txt").write_text("not an image")
    (examples / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit) as error:
        describe(tiny_model, "--examples", str(examples))
    assert "not images: notes.txt" in str(error.value)
    (examples / "notes.txt").unlink()
    with pytest.raises(SystemExit) as error:
        describe(tiny_model, "--examples", str(examples))
    assert "broken.png is not a readable image" in str(error.value)


def test_a_class_name_with_a_comma_is_refused(tiny_model):
    with pytest.raises(SystemExit) as error:
        card_command.main([str(tiny_model), "--classes", "background", "crack, wide", "--input-scale", "0..1"])
    assert "class names cannot hold a comma" in str(error.value) and "'crack, wide'" in str(error.value)


def test_the_bundled_page_is_unchanged():
    config = configure(AppConfig())
    cards = {name: ModelCard.load(path) for name, path in served_models().items()}
    words = page_text(config, cards)
    assert words.title == TITLE and words.about == ""
    assert words.heading == f"# {TITLE}\n" + INTRO.format(models=", ".join(c.display_title for c in cards.values()))
    assert live_clip(served_models(), config.weights_dir, EXAMPLES_DIR / "live_clip.mp4") == \
        EXAMPLES_DIR / "live_clip.mp4"


def test_a_model_served_alone_gets_a_page_about_it(tiny_model, examples):
    describe(tiny_model, "--title", "Road cracks", "--description", "Cracks in *concrete*.", "--examples",
             str(examples), "--colors", "10,20,30", "250,200,0")
    from segdemo.ui import build_demo

    config = AppConfig(model_files=(str(tiny_model),), only=True)
    demo = build_demo(config)
    assert demo.title == "Road cracks"
    texts = [block.value or "" for block in demo.blocks.values() if type(block).__name__ == "Markdown"]
    assert "# Road cracks\nCracks in *concrete*." in texts
    assert any(text.startswith("### About this demo") and "Pick a model (Road cracks)" in text for text in texts)
    assert not any(text.startswith(f"# {TITLE}") for text in texts)
    datasets = [block for block in demo.blocks.values() if type(block).__name__ == "Dataset"]
    shown = [sample[0]["path"] if isinstance(sample[0], dict) else sample[0] for d in datasets for sample in d.samples]
    assert sorted(map(lambda path: path.rsplit("/", 1)[-1], shown)) == ["road.jpg", "wall.png"]
    assert live_clip(served_models(), config.weights_dir, EXAMPLES_DIR / "live_clip.mp4") is None
    configure(AppConfig())


def test_app_title_and_description_from_the_command_line_or_the_environment(tiny_model, tmp_path, monkeypatch,
                                                                             capsys):
    monkeypatch.setattr("sys.argv", ["app.py"])
    import app  # builds the bundled page once on import

    describe(tiny_model)
    text = tmp_path / "words.md"
    text.write_text("Our **own** words.")
    config = app.app_config(["--model", str(tiny_model), "--only", "--title", "Cracks!", "--description", str(text)])
    assert (config.title, config.description, config.only) == ("Cracks!", "Our **own** words.", True)
    monkeypatch.setenv("SEGDEMO_TITLE", "From the Space")
    monkeypatch.setenv("SEGDEMO_DESCRIPTION", "Variables *work*.")
    config = app.app_config([])
    assert (config.title, config.description) == ("From the Space", "Variables *work*.")
    words = page_text(config, {name: ModelCard.load(path) for name, path in served_models().items()})
    assert words.heading.startswith("# From the Space\nVariables *work*.") and "Pick a model" in words.about
    monkeypatch.setenv("SEGDEMO_TITLE", "y" * 10_000)
    with pytest.raises(SystemExit) as error:
        app.app_config([])
    assert error.value.code == 2
    assert f"1 to {MAX_TITLE_CHARS} characters" in capsys.readouterr().err
    configure(AppConfig())


def test_the_card_json_lists_only_what_was_stated(tiny_model):
    describe(tiny_model)
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    assert "clip" not in card and "examples" not in card and "title" not in card and "colors" not in card
    assert card["description"] == "A logits segmentation model described by segdemo.card."  # what it tells
