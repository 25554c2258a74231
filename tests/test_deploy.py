"""segdemo.deploy without the network: the file selection, the rewritten requirements and README, LFS
coverage of every uploaded binary, the dry-run CLI, and the upload against a recording fake HfApi."""

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segdemo.deploy import space as deploy

ROOT = Path(__file__).resolve().parent.parent
SECRET = "hf_NotARealTokenButSecret1234567890"
BINARY_SUFFIXES = {".keras", ".h5", ".tflite", ".onnx", ".png", ".jpg", ".jpeg", ".webp", ".zip"}
CPU_REQUIREMENTS = """# CPU runtime; for a GPU replace tensorflow-cpu with tensorflow[and-cuda]
tensorflow-cpu==2.21.0
keras==3.15.1
gradio[mcp]==6.31.0  # the MCP server
tensorflow-cpu-extra==1.0
"""
# A checkout's worth of files: kept ones, then ones a Space must not get.
KEPT = ["app.py", "segdemo/__init__.py", "segdemo/ui/tab.py", "weights/m.keras", "weights/m.json",
        "examples/a.png", "docs/shot.png", "requirements.txt", "README.md", "LICENSE", ".gitattributes"]
DROPPED = ["tests/test_a.py", "bench/b.py", ".venv/lib/site.py", "runs/m/state.json", "segdemo/__pycache__/x.pyc",
           ".pytest_cache/v", ".gradio/x", "flagged/log.csv", ".ci/run", ".github/workflows/ci.yml", ".gitignore",
           "cache/x.bin", ".cache/y", "runs_load.log", "segdemo/stale.pyc", "requirements-dev.txt", "pyproject.toml",
           "segdemo.egg-info/PKG-INFO", "segdemo/ui/tab.pyi"]


def front_matter(text):
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "no front matter block at the top"
    return yaml.safe_load(match.group(1))


def make_checkout(root, readme="# demo\n\nDrag a photo in.\n"):
    for name in KEPT + DROPPED:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x00binary" if Path(name).suffix in BINARY_SUFFIXES else f"{name}\n".encode())
    (root / "requirements.txt").write_text(CPU_REQUIREMENTS)
    (root / "README.md").write_text(readme)
    return root


def git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_importing_deploy_loads_neither_gradio_nor_the_hub_client():
    code = "import sys, segdemo.deploy; print(sorted({'gradio', 'huggingface_hub', 'tensorflow'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_walked_tree_keeps_the_app_and_drops_development_files(tmp_path):
    assert sorted(deploy.select_files(make_checkout(tmp_path))) == sorted(KEPT)


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_git_checkout_lists_tracked_and_untracked_but_not_ignored(tmp_path):
    root = make_checkout(tmp_path)
    (root / ".gitignore").write_text("secret.txt\n")
    (root / "secret.txt").write_text("ignored\n")
    git(root, "init", "-q")
    git(root, "add", "app.py", "segdemo", "tests")
    (root / "weights" / "m.json").unlink()  # deleted from the work tree: not uploaded
    selected = deploy.select_files(root)
    assert "secret.txt" not in selected and "weights/m.json" not in selected
    assert sorted(selected) == sorted(set(KEPT) - {"weights/m.json"})


def test_this_checkout_uploads_the_app_models_and_cards():
    selected = deploy.select_files(ROOT)
    assert {"app.py", "requirements.txt", "README.md", "LICENSE", ".gitattributes"} <= set(selected)
    assert {f"segdemo/{p.name}" for p in (ROOT / "segdemo").glob("*.py")} <= set(selected)
    models = sorted(p.name for p in (ROOT / "weights").glob("*.keras"))
    assert models and all(f"weights/{m}" in selected and f"weights/{m[:-6]}.json" in selected for m in models)
    assert not [name for name in selected
                if name.split("/")[0] in {"tests", "bench", ".venv", "runs", ".ci"} or "__pycache__" in name]


def test_requirements_for_gpu_hardware_install_tensorflow_with_cuda():
    assert deploy.requirements_for("cpu-basic", CPU_REQUIREMENTS) == CPU_REQUIREMENTS
    assert deploy.requirements_for("cpu-upgrade", CPU_REQUIREMENTS) == CPU_REQUIREMENTS
    gpu = deploy.requirements_for("t4-small", CPU_REQUIREMENTS)
    lines = gpu.splitlines()
    assert lines[1] == "tensorflow[and-cuda]==2.21.0"
    assert lines[0] == CPU_REQUIREMENTS.splitlines()[0]  # the comment is not a requirement
    assert "tensorflow-cpu-extra==1.0" in lines  # another package whose name only starts the same
    assert lines[2:4] == CPU_REQUIREMENTS.splitlines()[2:4]
    real = (ROOT / "requirements.txt").read_text()
    version = re.search(r"^tensorflow-cpu==([\w.]+)", real, re.M).group(1)
    assert re.search(rf"^tensorflow\[and-cuda\]=={re.escape(version)}$", deploy.requirements_for("l4x1", real), re.M)
    assert not re.search(r"^tensorflow-cpu", deploy.requirements_for("a10g-small", real), re.M)


def test_readme_without_front_matter_gets_one_in_the_staged_copy_only():
    text = deploy.space_readme("# demo\n\nBody.\n", "6.31.0", "3.11")
    meta = front_matter(text)
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == "6.31.0" and meta["app_file"] == "app.py"
    assert meta["pinned"] is False and meta["license"] == "mit" and str(meta["python_version"]) == "3.11"
    assert meta["title"] and meta["emoji"] and meta["colorFrom"] and meta["colorTo"]
    assert text.endswith("# demo\n\nBody.\n")


def test_existing_front_matter_is_kept_with_the_pinned_gradio():
    readme = (ROOT / "README.md").read_text()
    pinned = re.search(r"^gradio(?:\[\w+\])?==([\w.]+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    staged = deploy.staged_texts(ROOT, "cpu-basic")["README.md"]
    assert front_matter(staged) == {**front_matter(readme), "sdk_version": pinned}
    old = deploy.space_readme("---\ntitle: Mine\nsdk: gradio\nsdk_version: 5.0.0\n---\n# x\n", pinned)
    meta = front_matter(old)
    assert meta["title"] == "Mine" and meta["sdk_version"] == pinned and meta["app_file"] == "app.py"
    assert old.count("---\n") == 2 and old.endswith("# x\n")


def is_binary(path):
    return path.suffix in BINARY_SUFFIXES or b"\0" in path.read_bytes()[:8192]


def lfs_patterns():
    lines = (ROOT / ".gitattributes").read_text().splitlines()
    return [line.split()[0] for line in lines if "filter=lfs" in line.split()[1:] and not line.startswith("#")]


def test_every_uploaded_binary_is_tracked_by_lfs():
    binaries = [name for name in deploy.select_files(ROOT) if is_binary(ROOT / name)]
    assert any(name.endswith(".keras") for name in binaries) and any(name.endswith(".png") for name in binaries)
    patterns = lfs_patterns()
    assert not [name for name in binaries if not any(fnmatch.fnmatch(Path(name).name, p) for p in patterns)]
    if shutil.which("git") is None:
        return
    out = subprocess.run(["git", "-C", str(ROOT), "check-attr", "filter", "--", *binaries], capture_output=True,
                         text=True, check=True).stdout
    assert sorted(line.rsplit(": ", 1)[1] for line in out.splitlines()) == ["lfs"] * len(binaries)


def test_dry_run_lists_files_sizes_and_total_without_the_network(monkeypatch, capsys):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("a dry run must not talk to the Hub")

    monkeypatch.setattr(huggingface_hub, "HfApi", no_network)
    deploy.main(["--space", "someone/segdemo", "--hardware", "t4-small", "--dry-run"])
    out = capsys.readouterr().out
    listed = {m.group(3): (float(m.group(1)), m.group(2))
              for m in re.finditer(r"^\s*([\d.]+) (B|kB|MB)  (\S+)$", out, re.M)}
    selected = deploy.select_files(ROOT)
    assert sorted(listed) == sorted(selected)
    pets_mb = (ROOT / "weights" / "pets.keras").stat().st_size / 1e6
    assert listed["weights/pets.keras"][1] == "MB" and abs(listed["weights/pets.keras"][0] - pets_mb) <= 0.05
    total = int(re.search(rf"^{len(selected)} files, [\d.]+ \w+ total \((\d+) bytes\)$", out, re.M).group(1))
    rewritten = deploy.staged_texts(ROOT, "t4-small")
    expected = sum(len(rewritten[n].encode()) if n in rewritten else (ROOT / n).stat().st_size for n in selected)
    assert total == expected
    assert re.search(r"^tensorflow\[and-cuda\]==", out, re.M)
    assert "would deploy to https://huggingface.co/spaces/someone/segdemo" in out


@pytest.mark.parametrize("space", ["not-a-space", "../etc/passwd", "a/b/c", "-x/y", "owner/"])
def test_invalid_space_id_is_a_clear_usage_error(space, capsys):
    with pytest.raises(SystemExit) as exited:
        deploy.main([f"--space={space}", "--dry-run"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "is not of the form owner/name" in err and "Traceback" not in err


def test_unknown_hardware_is_refused(capsys):
    with pytest.raises(SystemExit):
        deploy.main(["--space", "a/b", "--hardware", "gpu-9000", "--dry-run"])
    assert "unknown hardware 'gpu-9000'" in capsys.readouterr().err


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records calls and what the staging folder held at upload."""

    calls = []
    fail_with = None

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        if self.fail_with:
            raise RuntimeError(self.fail_with)

    def add_space_variable(self, repo_id, key, value):
        self.calls.append(("add_space_variable", repo_id, key, value))

    def request_space_hardware(self, repo_id, hardware):
        self.calls.append(("request_space_hardware", repo_id, hardware))

    def upload_folder(self, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        self.calls.append(("upload_folder", repo_id, kwargs, files))


@pytest.fixture
def recording_api(monkeypatch):
    import huggingface_hub

    RecordingApi.calls, RecordingApi.fail_with = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    return RecordingApi


def test_deploy_creates_the_space_requests_the_gpu_and_uploads_the_staged_folder(tmp_path, recording_api, capsys):
    root = make_checkout(tmp_path / "checkout")
    readme_before = (root / "README.md").read_bytes()
    deploy.main(["--space", "someone/demo", "--private", "--hardware", "t4-small", "--token", SECRET,
                 "--root", str(root)])
    calls = recording_api.calls
    assert [call[0] for call in calls] == ["init", "create_repo", "request_space_hardware", "upload_folder"]
    assert calls[0] == ("init", SECRET)
    assert calls[1] == ("create_repo", "someone/demo",
                        {"repo_type": "space", "space_sdk": "gradio", "private": True, "exist_ok": True})
    assert calls[2] == ("request_space_hardware", "someone/demo", "t4-small")
    _, repo_id, kwargs, files = calls[3]
    assert repo_id == "someone/demo" and kwargs["repo_type"] == "space"
    assert sorted(files) == sorted(KEPT)
    assert files["weights/m.keras"] == (root / "weights/m.keras").read_bytes()
    assert "tensorflow[and-cuda]==2.21.0" in files["requirements.txt"].decode()
    assert front_matter(files["README.md"].decode())["sdk"] == "gradio"
    assert (root / "README.md").read_bytes() == readme_before  # only the staged copy got front matter
    assert (root / "requirements.txt").read_text() == CPU_REQUIREMENTS
    out = capsys.readouterr().out
    assert "https://huggingface.co/spaces/someone/demo" in out
    assert "HF_TOKEN" in out and "SEGDEMO_HUB_REPO" in out and SECRET not in out


def test_cpu_basic_requests_no_hardware_and_keeps_tensorflow_cpu(tmp_path, recording_api):
    root = make_checkout(tmp_path / "checkout")
    url = deploy.deploy("someone/demo", root=root, out=lambda line: None)
    assert url == "https://huggingface.co/spaces/someone/demo"
    assert [call[0] for call in recording_api.calls] == ["init", "create_repo", "upload_folder"]
    assert recording_api.calls[1][2]["private"] is False
    assert recording_api.calls[2][3]["requirements.txt"].decode() == CPU_REQUIREMENTS


def test_a_failed_upload_exits_with_a_message_without_the_token(tmp_path, recording_api, capsys):
    root = make_checkout(tmp_path / "checkout")
    recording_api.fail_with = f"401 Unauthorized for token {SECRET}"
    with pytest.raises(SystemExit) as exited:
        deploy.main(["--space", "someone/demo", "--token", SECRET, "--root", str(root)])
    message = str(exited.value.code)
    assert message.startswith("deploy to someone/demo failed: RuntimeError: 401 Unauthorized")
    assert SECRET not in message and "***" in message


def users_model(folder):
    """A model file with its card and the examples and clip segdemo.card copied beside it (the bytes stand in
    for a model: deploying reads the card, not the model)."""
    import json

    folder.mkdir(parents=True)
    (folder / "cracks.keras").write_bytes(b"\x00model")
    card = {"name": "cracks", "title": "Road cracks", "classes": ["background", "crack"], "input_size": 32,
            "examples": ["cracks_examples/wall.png"], "clip": "cracks_examples/clip.mp4"}
    (folder / "cracks.json").write_text(json.dumps(card))
    (folder / "cracks.md").write_text("# Road cracks\n")
    (folder / "cracks_examples").mkdir()
    (folder / "cracks_examples" / "wall.png").write_bytes(b"\x89PNG wall")
    (folder / "cracks_examples" / "clip.mp4").write_bytes(b"\x00mp4")
    return folder / "cracks.keras"


def test_a_users_model_travels_with_its_card_examples_and_showcase_variables(tmp_path, recording_api, capsys):
    root = make_checkout(tmp_path / "checkout")
    model = users_model(tmp_path / "mine")
    (tmp_path / "about.md").write_text("Finds *cracks*.\n")
    deploy.main(["--space", "someone/cracks", "--model", str(model), "--only", "--title", "Road cracks",
                 "--description", str(tmp_path / "about.md"), "--root", str(root)])
    calls = recording_api.calls
    variables = {call[2]: call[3] for call in calls if call[0] == "add_space_variable"}
    assert variables == {"SEGDEMO_MODELS": "models/cracks.keras", "SEGDEMO_ONLY": "1", "SEGDEMO_TITLE": "Road cracks",
                         "SEGDEMO_DESCRIPTION": "Finds *cracks*."}
    files = next(call for call in calls if call[0] == "upload_folder")[3]
    assert {name: files[name] for name in files if name.startswith("models/")} == {
        "models/cracks.keras": b"\x00model", "models/cracks.json": (model.with_suffix(".json")).read_bytes(),
        "models/cracks.md": b"# Road cracks\n", "models/cracks_examples/wall.png": b"\x89PNG wall",
        "models/cracks_examples/clip.mp4": b"\x00mp4"}
    assert set(KEPT) <= set(files)
    assert front_matter(files["README.md"].decode())["title"] == "Road cracks"
    assert "variable SEGDEMO_ONLY = 1" in capsys.readouterr().out


def test_a_model_without_a_card_or_a_bad_title_is_refused_before_anything_is_uploaded(tmp_path, recording_api):
    root = make_checkout(tmp_path / "checkout")
    bare = tmp_path / "bare.keras"
    bare.write_bytes(b"\x00")
    with pytest.raises(SystemExit) as exited:
        deploy.main(["--space", "someone/x", "--model", str(bare), "--root", str(root)])
    assert "has no card bare.json" in str(exited.value) and "python -m segdemo.card" in str(exited.value)
    model = users_model(tmp_path / "mine")
    with pytest.raises(SystemExit) as exited:
        deploy.main(["--space", "someone/x", "--model", str(model), "--title", "t" * 10_000, "--root", str(root)])
    assert "--title is a one-line title" in str(exited.value)
    assert recording_api.calls == []
