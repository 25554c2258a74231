"""What `segdemo.deploy --model ... --only --title ... --description ...` carries to a Space: a user's model files
with their cards and showcase files (examples, clip), and the Space variables that serve them as `app.py` would."""

from dataclasses import dataclass, field
from pathlib import Path

from segdemo.config import DESCRIPTION_ENV, MODELS_ENV, ONLY_ENV, TITLE_ENV
from segdemo.errors import InputError

SPACE_MODELS_DIR = "models"  # where --model's files go in the Space


@dataclass
class SpaceModels:
    """What `--model`, `--only`, `--title` and `--description` carry to the Space: the model files with their
    cards and showcase files, and the Space variables that serve them as `app.py` would."""

    models: list = field(default_factory=list)  # local model files (or SavedModel folders), checked
    only: bool = False
    title: str = ""
    description: str = ""

    @classmethod
    def from_options(cls, models=(), only=False, title=None, description=None):
        """Checked options (InputError: a model without a card, a bad title or description)."""
        from segdemo.card.showcase import check_title, read_description
        from segdemo.serving.registry import check_listed_models

        if only and not models:
            raise InputError("--only needs a --model")
        check_listed_models(models)
        return cls([Path(str(path).rstrip("/")) for path in models], only,
                   check_title(title) if title else "", read_description(description) if description else "")

    def files(self):
        """{path in the Space: local file} of each model, its card (JSON and Markdown) and the examples and clip
        beside it (its card names them)."""
        from segdemo.card.showcase import examples_folder
        from segdemo.models.cards import card_path, markdown_path

        files = {}
        for model in self.models:
            local = [*(sorted(p for p in model.rglob("*") if p.is_file()) if model.is_dir() else [model]),
                     card_path(model), markdown_path(model)]
            folder = examples_folder(model)
            local += sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
            files.update({f"{SPACE_MODELS_DIR}/{path.relative_to(model.parent).as_posix()}": path
                          for path in local if path.is_file()})
        return files

    def variables(self):
        """The Space variables that serve these models: {name: value}, only those stated."""
        served = ",".join(f"{SPACE_MODELS_DIR}/{model.name}" for model in self.models)
        variables = {MODELS_ENV: served, ONLY_ENV: "1" if self.only else "", TITLE_ENV: self.title,
                     DESCRIPTION_ENV: self.description}
        return {name: value for name, value in variables.items() if value}
