"""Deploy the checkout as a Hugging Face Space (Gradio SDK).

    python -m segdemo.deploy --space owner/name [--private] [--hardware t4-small] [--token TOKEN] [--dry-run]
        [--model MODEL ... [--only] [--title TITLE] [--description FILE.md]]

Uploads what git tracks (or, outside a git checkout, the tree) minus development files: tests, benchmarks,
CI, caches, virtualenvs, logs. The uploaded README gets Spaces front matter if it has none (the repo's file is
never changed); on GPU hardware the uploaded requirements install `tensorflow[and-cuda]` instead of
`tensorflow-cpu`. Binaries go through Xet/LFS (`upload_folder`). `--dry-run` lists what would be uploaded
and touches no network. `--model` carries a model file with its card and the examples and clip `segdemo.card`
copied beside it (under `models/` in the Space), and the Space's variables say what `app.py --model ... --only
--title ... --description ...` would: SEGDEMO_MODELS, SEGDEMO_ONLY, SEGDEMO_TITLE, SEGDEMO_DESCRIPTION.
"""

import argparse
import fnmatch
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

from segdemo.config import HUB_REPO_ENV, HUB_REVISION_ENV, PROJECT_ROOT
from segdemo.deploy.models import SpaceModels
from segdemo.errors import InputError
from segdemo.models.hub import check_repo_id

ROOT = PROJECT_ROOT
DEFAULT_HARDWARE = "cpu-basic"
CPU_PREFIX = "cpu-"
HARDWARE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")  # the fallback check when huggingface_hub has no list
LARGE_FILE_BYTES = 30 * 1000 * 1000  # warned about: slow to upload and to pull on every Space restart
SPACES_URL = "https://huggingface.co/spaces/{}"
README = "README.md"
REQUIREMENTS = "requirements.txt"
GITATTRIBUTES = ".gitattributes"

EXCLUDED_DIRS = {
    ".venv", "venv", "__pycache__", ".cache", "cache", ".pytest_cache", ".ruff_cache", ".gradio", "flagged",
    "runs", "tests", "bench", ".ci", "build", "dist", "htmlcov",
}
# Test and bench outputs, generated stubs (Gradio writes segdemo/ui/*.pyi on import), and development-only
# configuration that a Space does not read.
EXCLUDED_PATTERNS = (
    "*.pyc", "*.pyo", "*.log", ".coverage*", "segdemo/ui/*.pyi",
    "requirements-dev.txt", "pyproject.toml", "pytest.ini",
)
CPU_TENSORFLOW = re.compile(r"^(\s*)tensorflow-cpu(?=\s*(?:[=<>!~;@\[]|$))", re.M)
GPU_TENSORFLOW = r"\1tensorflow[and-cuda]"
GRADIO_PIN = re.compile(r"^\s*gradio(?:\[[\w,\s-]*\])?\s*==\s*([\w.]+)", re.M)
FRONT_MATTER = re.compile(r"\A---\n(.*?\n)---\n", re.S)
FRONT_MATTER_DEFAULTS = {  # written when the README has none, or fills the keys it lacks
    "title": "segdemo",
    "emoji": "🐾",
    "colorFrom": "indigo",
    "colorTo": "pink",
    "sdk": "gradio",
    "app_file": "app.py",
    "pinned": "false",
    "license": "mit",
}
SECRETS_HELP = f"""Set in the Space's Settings -> Variables and secrets:
  HF_TOKEN          (a secret) a write token: the Fine-tune tab pushes fine-tuned models with it, and the
                    app reads a private {HUB_REPO_ENV} with it
  {HUB_REPO_ENV}  (a variable) a Hub model repo, owner/name, in segdemo's format (model.keras +
                    model.json): the Space serves it under its card's name, replacing a bundled model of
                    that name (and optionally {HUB_REVISION_ENV}: a branch, tag or commit)"""


# --- what is uploaded -----------------------------------------------------------------------------------

def is_excluded(relpath):
    """True for development files: see EXCLUDED_DIRS and EXCLUDED_PATTERNS; `.git*` except .gitattributes."""
    path = PurePosixPath(relpath)
    for part in path.parts:
        if part in EXCLUDED_DIRS or part.endswith(".egg-info") or (part.startswith(".git") and part != GITATTRIBUTES):
            return True
    return any(fnmatch.fnmatch(relpath, pattern) or fnmatch.fnmatch(path.name, pattern)
               for pattern in EXCLUDED_PATTERNS)


def git_files(root):
    """Files git tracks or would track (untracked but not ignored) under `root`, or None when `root` is not
    the top of a git checkout."""
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, check=True).stdout.strip()
        if Path(top).resolve() != Path(root).resolve():
            return None
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sorted({name for name in listed.decode().split("\0") if name})


def walked_files(root):
    """Every file under `root`, skipping excluded folders without descending into them."""
    found = []
    for folder, dirs, names in os.walk(root):
        relfolder = Path(folder).relative_to(root).as_posix()
        dirs[:] = [d for d in dirs if not is_excluded(d if relfolder == "." else f"{relfolder}/{d}")]
        found += [name if relfolder == "." else f"{relfolder}/{name}" for name in names]
    return sorted(found)


def select_files(root=ROOT):
    """Relative POSIX paths of the files a Space needs, sorted."""
    root = Path(root)
    candidates = git_files(root)
    if candidates is None:
        candidates = walked_files(root)
    return [name for name in candidates if not is_excluded(name) and (root / name).is_file()]


def file_sizes(root, files):
    return {name: (Path(root) / name).stat().st_size for name in files}


def large_files(sizes, limit=LARGE_FILE_BYTES):
    return [name for name, size in sizes.items() if size > limit]


def human_size(size):
    for unit in ("B", "kB", "MB"):
        if size < 1000 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


# --- rewritten files ------------------------------------------------------------------------------------

def is_gpu(hardware):
    return not hardware.startswith(CPU_PREFIX)


def requirements_for(hardware, text):
    """requirements.txt for `hardware`: on GPU hardware `tensorflow-cpu` (same version and markers) becomes
    `tensorflow[and-cuda]`, which brings the CUDA libraries; comments and other lines are unchanged."""
    return CPU_TENSORFLOW.sub(GPU_TENSORFLOW, text) if is_gpu(hardware) else text


def gradio_version(requirements_text):
    """The gradio pinned in requirements (what the Space installs), else the installed one."""
    match = GRADIO_PIN.search(requirements_text)
    return match.group(1) if match else importlib.metadata.version("gradio")


def version_warnings(requirements_text):
    """A warning when the gradio installed here is not the one the Space will run (sdk_version)."""
    try:
        installed = importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError:
        return []
    pinned = gradio_version(requirements_text)
    return [] if installed == pinned else [f"warning: gradio {installed} is installed here, the Space runs {pinned}"]


def set_key(block, key, value):
    """Set a top-level `key: value` line of a YAML block (replaced in place, else appended)."""
    line = re.compile(rf"^{re.escape(key)}:.*$", re.M)
    if line.search(block):
        return line.sub(lambda _: f"{key}: {value}", block, count=1)
    return block + f"{key}: {value}\n"


def space_readme(text, sdk_version, python_version=None):
    """README with Spaces front matter: the existing block kept, with sdk_version set and missing keys filled
    in from FRONT_MATTER_DEFAULTS, or a new block on top."""
    match = FRONT_MATTER.match(text)
    block, body = (match.group(1), text[match.end():]) if match else ("", "\n" + text)
    for key, value in FRONT_MATTER_DEFAULTS.items():
        if not re.search(rf"^{re.escape(key)}:", block, re.M):
            block = set_key(block, key, value)
    block = set_key(block, "sdk_version", sdk_version)
    if python_version and not re.search(r"^python_version:", block, re.M):
        block = set_key(block, "python_version", f'"{python_version}"')
    return f"---\n{block}---\n{body}"


def staged_texts(root, hardware, title=""):
    """{relative path: text} of the files the Space gets rewritten (`title`: the Space's title, a showcase's)."""
    root = Path(root)
    requirements = (root / REQUIREMENTS).read_text()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    readme = space_readme((root / README).read_text(), gradio_version(requirements), python)
    if title:
        block = FRONT_MATTER.match(readme)
        readme = f"---\n{set_key(block.group(1), 'title', json.dumps(title))}---\n{readme[block.end():]}"
    return {REQUIREMENTS: requirements_for(hardware, requirements), README: readme}


def stage(root, files, folder, hardware, extra=None, title=""):
    """Lay the Space out in `folder`: hard links (copies across file systems) of `files` and of `extra`
    ({path in the Space: local file}), and new files for the rewritten ones, so nothing in the checkout is
    written through a link."""
    root, folder = Path(root), Path(folder)
    texts = staged_texts(root, hardware, title)
    sources = {**{name: root / name for name in files}, **(extra or {})}
    for name, source in sources.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name in texts:
            target.write_text(texts[name])
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    return folder


# --- the Hub --------------------------------------------------------------------------------------------

def known_hardware():
    """Hardware flavours huggingface_hub knows, or None when it has no list."""
    try:
        from huggingface_hub import SpaceHardware
    except ImportError:
        return None
    return [flavour.value for flavour in SpaceHardware]


def upload_space(space, folder, hardware=DEFAULT_HARDWARE, private=False, token=None, variables=None):
    """Create the Space if needed, set its `variables` and request `hardware` (before the upload, so the first
    build runs with them) and upload `folder`, deleting remote files it no longer has. Errors come back without
    the token."""
    from huggingface_hub import HfApi

    try:
        api = HfApi(token=token)
        api.create_repo(space, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        for name, value in (variables or {}).items():
            api.add_space_variable(space, name, value)
        if hardware != DEFAULT_HARDWARE:
            api.request_space_hardware(space, hardware)
        api.upload_folder(repo_id=space, repo_type="space", folder_path=str(folder), delete_patterns="*",
                          commit_message="Deploy segdemo with segdemo.deploy")
    except Exception as error:  # noqa: BLE001 - re-raised as one line, without the token
        message = f"{type(error).__name__}: {error}"
        raise RuntimeError(message.replace(token, "***")[:500] if token else message[:500]) from None
    return SPACES_URL.format(space)


def warnings_for(root, sizes):
    """Lines to print before an upload: files over LARGE_FILE_BYTES, a gradio version mismatch."""
    large = [f"warning: {name} is over {human_size(LARGE_FILE_BYTES)}" for name in large_files(sizes)]
    return large + version_warnings((Path(root) / REQUIREMENTS).read_text())


def deploy(space, hardware=DEFAULT_HARDWARE, private=False, token=None, root=ROOT, out=print, models=None):
    """Select, stage and upload the checkout (and `models`, a SpaceModels) as the Space `space`; returns its
    URL."""
    models = models or SpaceModels()
    files, extra = select_files(root), models.files()
    for line in warnings_for(root, {**file_sizes(root, files), **{n: p.stat().st_size for n, p in extra.items()}}):
        out(line)
    with tempfile.TemporaryDirectory(prefix="segdemo-space-") as folder:
        stage(root, files, folder, hardware, extra, models.title)
        url = upload_space(space, folder, hardware, private, token, models.variables())
    out(f"Space: {url} ({len(files) + len(extra)} files, hardware {hardware}; it builds now, see its Logs tab)")
    for name, value in models.variables().items():
        out(f"variable {name} = {value[:80]}{'...' if len(value) > 80 else ''}")
    out(SECRETS_HELP)
    return url


def dry_run(space, hardware=DEFAULT_HARDWARE, root=ROOT, out=print, models=None):
    """Print what `deploy` would upload: files with sizes, the total, the Space variables and the rewritten
    requirements."""
    models = models or SpaceModels()
    files, extra = select_files(root), models.files()
    sizes = {**file_sizes(root, files), **{name: path.stat().st_size for name, path in extra.items()}}
    texts = staged_texts(root, hardware, models.title)
    for name in [*files, *extra]:
        size = len(texts[name].encode()) if name in texts else sizes[name]
        out(f"{human_size(size):>10}  {name}")
    total = sum(len(texts[n].encode()) if n in texts else sizes[n] for n in [*files, *extra])
    out(f"{len(files) + len(extra)} files, {human_size(total)} total ({total} bytes)")
    for name, value in models.variables().items():
        out(f"variable {name} = {value[:80]}{'...' if len(value) > 80 else ''}")
    for line in warnings_for(root, sizes):
        out(line)
    out(f"\n{REQUIREMENTS} for {hardware}:\n{texts[REQUIREMENTS]}")
    out(f"dry run: nothing uploaded; would deploy to {SPACES_URL.format(space)} on {hardware}")


# --- command line ---------------------------------------------------------------------------------------

def space_id(value):
    try:
        return check_repo_id(value, "Space id")
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def hardware_name(value):
    known = known_hardware()
    if known is not None and value not in known:
        raise argparse.ArgumentTypeError(f"unknown hardware {value!r}; one of: {', '.join(known)}")
    if not HARDWARE_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a hardware name")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m segdemo.deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", required=True, type=space_id, help="the Space's id, owner/name")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--hardware", default=DEFAULT_HARDWARE, type=hardware_name,
                        help=f"Space hardware (default {DEFAULT_HARDWARE}); not cpu-*: GPU requirements")
    parser.add_argument("--token", default=None, help="Hub write token (default: HF_TOKEN or the saved login)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded; no network")
    parser.add_argument("--model", action="append", default=[], help="a model file (with the card segdemo.card "
                        "wrote beside it) the Space serves; repeatable")
    parser.add_argument("--only", action="store_true", help="serve only the --model models (one: its showcase)")
    parser.add_argument("--title", default=None, help="the page's heading and the Space's title")
    parser.add_argument("--description", default=None, metavar="FILE.md", help="the Markdown under the heading")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        models = SpaceModels.from_options(args.model, args.only, args.title, args.description)
    except InputError as error:
        raise SystemExit(f"segdemo.deploy: {error}") from None
    if args.dry_run:
        dry_run(args.space, args.hardware, args.root, models=models)
        return
    try:
        deploy(args.space, args.hardware, args.private, args.token, args.root, models=models)
    except RuntimeError as error:
        raise SystemExit(f"deploy to {args.space} failed: {error}") from None


if __name__ == "__main__":
    main()
