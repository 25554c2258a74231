"""A model a person uploads in the browser, served to their session only: the file is checked (size, Keras
safe mode with the config check of `model_files`, the memory it would need), described by `segdemo.card`
from what it tells and what the person states (class names; input scale, resize and filter, or a few
labelled pairs to score the choices on), copied with its card into the session's folder, and published as
the session's "my uploaded model (this session)". It goes with the session."""

import shutil
from dataclasses import dataclass

from segdemo.app.sessions import UPLOADED_CHOICE, UPLOADED_MODELS, SessionModel, session_folder
from segdemo.card.check import check_card
from segdemo.card.infer import infer_card, parse_statistics
from segdemo.errors import InputError
from segdemo.limits import MAX_UPLOADED_MODEL_BYTES, MAX_UPLOADED_MODEL_MEMORY
from segdemo.models.cards import parse_class_names
from segdemo.models.preprocessing import OPEN_OPTIONS

CHECK = "check with the pairs"  # the choice that lets labelled pairs decide a preprocessing option


@dataclass
class UploadedModel:
    """What the upload became: the name to use, the card, and the report in plain words."""

    name: str
    card: object  # cards.ModelCard
    lines: list  # inferred, stated, checked
    warnings: list


def check_upload_size(path):
    size = path.stat().st_size if path.is_file() else 0
    if size > MAX_UPLOADED_MODEL_BYTES:
        raise InputError(f"{path.name} is {size / 1e6:g} MB; an uploaded model may be at most "
                         f"{MAX_UPLOADED_MODEL_BYTES / 1e6:g} MB (serve a larger one with app.py --model)")


def check_memory(model, card):
    from segdemo.models.files import estimated_memory_bytes

    needed = estimated_memory_bytes(model, card.size)
    if needed > MAX_UPLOADED_MODEL_MEMORY:
        raise InputError(f"this model would need about {needed / 1e9:.1f} GB at {card.size[0]}x{card.size[1]}; an "
                         f"uploaded model may use at most {MAX_UPLOADED_MODEL_MEMORY / 1e9:.1f} GB (serve it with "
                         "app.py --model on a larger machine)")


def upload_model(key, model_path, class_names="", input_scale=CHECK, resize=CHECK, resize_filter=CHECK,
                 pair_paths=(), channel_order=CHECK, input_mean="", input_std="", threshold=None, white="",
                 output="", replace_layers=""):
    """Check, describe and serve an uploaded model file for session `key`; returns an UploadedModel. The options
    are `segdemo.card`'s (CHECK: let the pairs decide; `replace_layers`: "NAME=OP, NAME=OP" for Lambda layers).
    Raises InputError (what was wrong, what is accepted); the session's earlier model stays as it was."""
    import tempfile
    from pathlib import Path

    from segdemo.card.lambdas import code_layers, code_layers_refused
    from segdemo.card.lambdas import replace_layers as swap_layers
    from segdemo.data.uploads import read_upload
    from segdemo.models.files import load_model_file

    source = Path(model_path)
    check_upload_size(source)
    items = [item.strip() for item in str(replace_layers or "").replace(";", ",").split(",") if item.strip()]
    unreplaced = [facts for facts in code_layers(source) if facts.name not in {i.partition("=")[0] for i in items}]
    if unreplaced:
        raise InputError(code_layers_refused(source.name, unreplaced, in_app=True))
    with tempfile.TemporaryDirectory(prefix="segdemo_upload_model_") as scratch:  # a replaced file, until stored
        if items:
            model, source = swap_layers(source, items, Path(scratch) / f"{source.stem}.keras")
        else:
            model = load_model_file(source)
        stated = {"input_scale": input_scale, "resize": resize, "resize_filter": resize_filter,
                  "channel_order": channel_order}
        extra = {"threshold": float(threshold) if threshold not in (None, "") else None, "white": white or None,
                 "output": output or None}
        for option, text in (("input_mean", input_mean), ("input_std", input_std)):
            if str(text or "").strip():
                extra[option] = parse_statistics(text, None, option.replace("_", " "))[0]
        inferred = infer_card(model, source.name, parse_class_names(class_names) or None,
                              {**{option: value for option, value in stated.items() if value != CHECK}, **extra})
        fixed = inferred.known  # stated, or inferred (a Rescaling layer first: 0..255)
        card = inferred.card.replace(name="uploaded-" + source.stem, title=f"Uploaded: {source.name}")
        check_memory(model, card)
        lines, warnings = list(inferred.lines), list(inferred.warnings)
        open_options = [option for option in stated if option not in fixed and not (
            option == "channel_order" and card.input_channels == 1)]
        if pair_paths and open_options:
            _, loaded, _ = read_upload([str(path) for path in pair_paths], card)
            if not loaded:
                raise InputError("None of the uploaded pairs could be read for these classes: see the Fine-tune tab's "
                                 "Check pairs for the accepted layouts")
            checked = check_card(model, card, [(image, mask) for _, image, mask in loaded], fixed, warnings)
            card, warnings = checked.card, checked.warnings
            lines += [f"checked on {len(loaded)} pairs:", *checked.lines]
        elif "input_scale" in open_options:
            scales = ", ".join(OPEN_OPTIONS["input_scale"][0])
            raise InputError(f"Say how the model's input pixels were scaled ({scales}, or the dataset's mean and std), "
                             "or give a few labelled pairs so the check can score each choice")
        folder = session_folder(key) / "uploaded"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        stored = folder / source.name
        shutil.copyfile(source, stored)
        card.save(stored)
        files = [str(stored), str(stored.with_suffix(".json")), str(stored.with_suffix(".md"))]
        UPLOADED_MODELS.put(key, SessionModel(stored, card, files, model))
        return UploadedModel(UPLOADED_CHOICE, card, lines, warnings)
