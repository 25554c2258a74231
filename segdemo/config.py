"""Where things are, and what the app is given: the project's folders, and `AppConfig`, read once from the
command line and the environment by `app.py` and handed to the registry and the UI (no module re-reads the
environment per call)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = PROJECT_ROOT / "weights"  # the bundled models: <name>.keras with its card <name>.json
EXAMPLES_DIR = PROJECT_ROOT / "examples"
