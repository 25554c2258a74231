"""Where things are, and what the app is given: `AppConfig`, read once from the command line and the
environment (`app.py`), handed to the registry and the UI. No module re-reads the environment per call; a
worker process gets the same configuration through the environment its parent gives it (`environment()`)."""

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from segdemo.limits import MAX_ZIP_BYTES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = PROJECT_ROOT / "weights"  # the bundled models: <name>.keras with its card <name>.json
EXAMPLES_DIR = PROJECT_ROOT / "examples"

MODELS_ENV = "SEGDEMO_MODELS"  # comma-separated model files to serve (app.py --model)
ONLY_ENV = "SEGDEMO_ONLY"  # set: serve only those, not the bundled models (app.py --only)
HUB_REPO_ENV = "SEGDEMO_HUB_REPO"  # a Hub model repo in segdemo's format to serve
HUB_REVISION_ENV = "SEGDEMO_HUB_REVISION"
MAX_UPLOAD_ENV = "SEGDEMO_MAX_UPLOAD_MB"
CACHE_ENV = "SEGDEMO_CACHE"
GRAPH_CACHE_ENV = "SEGDEMO_GRAPH_CACHE"  # where frozen serving graphs are kept between starts; "off": nowhere
GRAPH_CACHE_DIR = PROJECT_ROOT / ".cache" / "graphs"  # git-ignored (.gitignore), left behind by the deploy
MODEL_PROCESS_ENV = "SEGDEMO_MODEL_PROCESS"  # "off": app.py does not start the default model's process
TITLE_ENV = "SEGDEMO_TITLE"  # the page's heading and browser title (app.py --title)
DESCRIPTION_ENV = "SEGDEMO_DESCRIPTION"  # the Markdown under it, or a file holding it (app.py --description)
TOKEN_ENV = "HF_TOKEN"  # the Hub token a push falls back to
QUEUE_ENV = "SEGDEMO_QUEUE"  # the fine-tune job queue: unset, embedded (this machine); redis://HOST:PORT/DB


@dataclass(frozen=True)
class AppConfig:
    """What one app process serves and how. Frozen (hashable): the registry caches what it derives from it."""

    model_files: tuple = ()  # model files served besides the bundled ones (local paths; hf:// resolved first)
    only: bool = False  # serve only `model_files` (and the Hub model), not the bundled ones
    hub_repo: str = ""
    hub_revision: str = ""
    max_upload_mb: int = MAX_ZIP_BYTES // 1_000_000  # one uploaded file (refused while it streams in)
    cache_dir: Path = Path.home() / ".cache" / "segdemo"
    weights_dir: Path = WEIGHTS_DIR
    graph_cache_dir: Path = GRAPH_CACHE_DIR  # None: no graph cache (serving.graph_cache)
    model_process: bool = True  # app.py loads the default model in a second process while it starts (startup)
    title: str = ""  # the page's heading; "": the showcased model's title, else segdemo's (app.showcase)
    description: str = ""  # the Markdown under it (the text, not a file: app.py reads a file given)
    queue_url: str = ""  # "": fine-tunes run on this machine (embedded queue); else the Redis workers read
    hub_token: str = dataclasses.field(default="", repr=False)

    @classmethod
    def from_environment(cls, environ=None):
        environ = os.environ if environ is None else environ
        default = cls()
        return cls(
            model_files=tuple(item.strip() for item in environ.get(MODELS_ENV, "").split(",") if item.strip()),
            only=bool(environ.get(ONLY_ENV)),
            hub_repo=environ.get(HUB_REPO_ENV, "").strip(),
            hub_revision=environ.get(HUB_REVISION_ENV, "").strip(),
            max_upload_mb=int(environ.get(MAX_UPLOAD_ENV) or default.max_upload_mb),
            cache_dir=Path(environ[CACHE_ENV]) if environ.get(CACHE_ENV) else default.cache_dir,
            graph_cache_dir=graph_cache_dir(environ.get(GRAPH_CACHE_ENV, "")),
            model_process=environ.get(MODEL_PROCESS_ENV, "").strip().lower() != "off",
            title=environ.get(TITLE_ENV, "").strip(), description=environ.get(DESCRIPTION_ENV, "").strip(),
            queue_url=environ.get(QUEUE_ENV, "").strip(), hub_token=environ.get(TOKEN_ENV, ""))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def environment(self):
        """The environment variables that give a child process this configuration."""
        return {MODELS_ENV: ",".join(map(str, self.model_files)), ONLY_ENV: "1" if self.only else "",
                HUB_REPO_ENV: self.hub_repo, HUB_REVISION_ENV: self.hub_revision,
                MAX_UPLOAD_ENV: str(self.max_upload_mb), CACHE_ENV: str(self.cache_dir),
                GRAPH_CACHE_ENV: str(self.graph_cache_dir) if self.graph_cache_dir else "off",
                MODEL_PROCESS_ENV: "" if self.model_process else "off", TITLE_ENV: self.title,
                DESCRIPTION_ENV: self.description, QUEUE_ENV: self.queue_url}


def graph_cache_dir(value):
    """SEGDEMO_GRAPH_CACHE's folder: unset, GRAPH_CACHE_DIR; "off", None."""
    value = value.strip()
    return None if value.lower() == "off" else Path(value) if value else GRAPH_CACHE_DIR
