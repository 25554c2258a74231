"""A model's showcase, as `python -m segdemo.card` states it: the title, the description (Markdown), the main
class, the class colours, example images and an example clip. Examples and the clip are copied into a folder
beside the model (`<model>_examples/`), so they travel with it (`segdemo.deploy --model`, a copied folder); the
card lists them relative to the model's folder (`models.cards.showcase_file` finds them)."""

import shutil
from pathlib import Path

from segdemo.data.images import IMAGE_FORMATS, IMAGE_SUFFIXES, load_image
from segdemo.errors import InputError
from segdemo.limits import MAX_DESCRIPTION_CHARS, MAX_EXAMPLE_BYTES, MAX_EXAMPLES, MAX_TITLE_CHARS

DESCRIPTION_SUFFIXES = (".md", ".markdown", ".txt")
IGNORED_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")


def examples_folder(model_path):
    """`<folder>/<stem>_examples/`: where a model's examples and clip are copied."""
    model_path = Path(str(model_path).rstrip("/"))
    return model_path.parent / f"{model_path.stem}_examples"


def check_title(title, option="--title"):
    """The title, stripped; InputError when it is empty, several lines or too long for a heading."""
    title = (title or "").strip()
    if not title or "\n" in title or len(title) > MAX_TITLE_CHARS:
        raise InputError(f"{option} is a one-line title of 1 to {MAX_TITLE_CHARS} characters (got "
                         f"{len(title)} characters{', several lines' if chr(10) in title else ''})")
    return title


def read_description(value, option="--description"):
    """A description given as a Markdown/text file (read) or as the text itself; InputError when the file is
    missing or unreadable or the text is too long."""
    value = value or ""
    path = Path(value) if len(value) < 4096 and "\n" not in value else None
    if path is not None and (path.is_file() or path.suffix.lower() in DESCRIPTION_SUFFIXES):
        try:
            value = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{option} {value}: not a readable UTF-8 text file ({type(error).__name__}); give a "
                             f"Markdown file ({', '.join(DESCRIPTION_SUFFIXES)}) or the text itself") from None
    value = value.strip()
    if len(value) > MAX_DESCRIPTION_CHARS:
        raise InputError(f"{option} is {len(value)} characters; at most {MAX_DESCRIPTION_CHARS} are shown")
    return value


def parse_colors(texts, classes=None, option="--colors"):
    """'R,G,B' per class -> [[r, g, b], ...]; InputError naming the one that does not parse, or when there is
    not one per class."""
    colors = []
    for text in texts:
        parts = str(text).replace(" ", "").split(",")
        try:
            values = [int(part) for part in parts]
        except ValueError:
            values = []
        if len(values) != 3 or not all(0 <= value <= 255 for value in values):
            raise InputError(f"{option}: {text!r} is not a colour; give R,G,B per class, each 0..255 "
                             "(e.g. --colors 0,0,0 255,0,0)")
        colors.append(values)
    if classes is not None and len(colors) != len(classes):
        raise InputError(f"{option}: {len(colors)} colour(s) for {len(classes)} classes ({', '.join(classes)}); "
                         "give one R,G,B per class, in class order")
    return colors


def example_sources(folder):
    """The image files of an examples folder, sorted; InputError when it holds something else or too many."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--examples {folder}: not a folder; give a folder of example images ({IMAGE_FORMATS})")
    files = sorted(path for path in folder.iterdir() if path.is_file() and path.name not in IGNORED_NAMES
                   and not path.name.startswith("."))
    others = [path.name for path in files if path.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        raise InputError(f"--examples {folder}: not images: {', '.join(others[:10])}"
                         f"{' ...' if len(others) > 10 else ''}; the folder should hold only example images "
                         f"({IMAGE_FORMATS})")
    if not files:
        raise InputError(f"--examples {folder}: no images in it ({IMAGE_FORMATS})")
    if len(files) > MAX_EXAMPLES:
        raise InputError(f"--examples {folder}: {len(files)} images; at most {MAX_EXAMPLES} are shown")
    for path in files:
        if path.stat().st_size > MAX_EXAMPLE_BYTES:
            raise InputError(f"--examples: {path.name} is {path.stat().st_size / 1e6:.0f} MB; at most "
                             f"{MAX_EXAMPLE_BYTES // 1_000_000} MB per example")
        try:
            load_image(path)
        except InputError as error:
            raise InputError(f"--examples: {error}") from None
    return files


def check_clip(path):
    """An example clip that the Live tab can segment (its header checked against the video limits)."""
    from segdemo.serving.video_io import probe_video

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--clip {path}: no such file")
    try:
        probe_video(path)
    except InputError as error:
        raise InputError(f"--clip: {error}") from None
    return path


def copy_showcase_files(model_path, examples=None, clip=None):
    """Copy the example images (a folder) and the clip (a video file) beside the model; returns the card's
    (examples, clip) entries, relative to the model's folder. Everything is checked before anything is copied;
    a previous copy is replaced."""
    images = example_sources(examples) if examples else []
    video = check_clip(clip) if clip else None
    target = examples_folder(model_path)
    if images or video:
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
    for path in [*images, *([video] if video else [])]:
        shutil.copyfile(path, target / path.name)
    entries = [f"{target.name}/{path.name}" for path in images]
    return entries or None, f"{target.name}/{video.name}" if video else None
