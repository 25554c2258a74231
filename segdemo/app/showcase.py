"""What the page says about itself: the bundled demo's heading and introduction, or, for a user's model served
alone (`app.py --model MODEL --only`), that model's title, description, examples and clip, with segdemo's own
words moved to the About tab. `app.py --title/--description` (SEGDEMO_TITLE, SEGDEMO_DESCRIPTION) state the
heading and text for any page."""

from dataclasses import dataclass

from segdemo.models.cards import ModelCard, showcase_file
from segdemo.serving.registry import default_model_name

TITLE = "segdemo: U-Net semantic segmentation"
INTRO = ("Pick a model ({models}) and drop an image: the U-Net labels every pixel with a class. Outputs: the "
         "class mask, the probability map of one class, the uncertainty map and an overlay. **Batch** segments "
         "many images at once, **Compare** puts two models side by side, **Live** runs a model on your webcam and "
         "on a video, and in **Fine-tune** you upload a few labelled images of your own and adapt a model to them, "
         "for this session only. To teach it: correct a "
         "prediction with the brush (Segment tab), add it to your training set, and Retrain. Your own model: "
         "the About tab.")
ABOUT_HEADING = "### About this demo\nMade with segdemo, a web app for Keras U-Nets. "


@dataclass(frozen=True)
class PageText:
    """The page's heading (also the browser tab's title), the Markdown under it, and what the About tab says of
    segdemo ("" when the introduction heads the page)."""

    title: str
    description: str
    about: str = ""

    @property
    def heading(self):
        return f"# {self.title}\n{self.description}"


def showcased_model(config, models):
    """The name of the one model a page is about (served with `only`), else None (the bundled demo)."""
    return next(iter(models)) if config.only and len(models) == 1 else None


def page_text(config, cards):
    """The page's words for `config` (an AppConfig) and the served models' cards ({name: card})."""
    intro = INTRO.format(models=", ".join(card.display_title for card in cards.values()))
    shown = showcased_model(config, cards)
    card = cards[shown] if shown else None
    title = config.title or (card.display_title if card else TITLE)
    description = config.description or (card.description if card else "")
    if title == TITLE and not description:
        return PageText(TITLE, intro)
    return PageText(title, description, ABOUT_HEADING + intro)


def live_clip(models, weights_dir, bundled_clip):
    """The Live tab's example video: the clip the default model's card lists (beside the model), else the bundled
    clip where a bundled model opens the page (it shows what they know), else none."""
    name = default_model_name(models)
    path = models[name]
    card = ModelCard.load(path)
    if card.clip:
        return showcase_file(card.clip, path)
    if path.parent.resolve() == weights_dir.resolve() and bundled_clip.is_file():
        return bundled_clip
    return None
