"""Packaging facts a user relies on: the lock file is portable and the declared dependencies are the right ones."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_uv_lock_records_no_local_paths():
    text = (ROOT / "uv.lock").read_text()
    assert "[[package]]" in text
    local = re.findall(r'(file://\S+|path\s*=\s*"/[^"]*"|"/(?:opt|root|home|tmp|work)/[^"]*")', text)
    assert not local, f"uv.lock records local paths: {local[:5]}"
    # the project itself is the only editable/virtual source
    assert re.search(r'name = "visionassist-training"\s*\nversion = "[^"]+"\s*\nsource = \{ editable = "\." \}', text)


def test_environment_matches_the_lock():
    """What you install is what was tested: every package uv.lock resolves for this platform (torch and what only
    torch needs excepted: the Makefile pins torch per platform) is installed at exactly the locked version."""
    import subprocess
    import sys
    from importlib import metadata

    from packaging.markers import Marker

    flags = re.search(r"^EXPORT_FLAGS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()  # the set-up's own export
    uv = Path(sys.executable).parent / "uv"
    assert uv.is_file(), f"{uv} is missing: set the environment up with `make setup`"
    export = subprocess.run([str(uv), "export", *flags, "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout
    locked = {}
    for line in export.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            requirement, _, marker = line.partition(";")
            name, _, version = requirement.strip().partition("==")
            if not marker.strip() or Marker(marker.strip()).evaluate():
                locked[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert len(locked) > 50 and "torch" not in locked and locked.get("kaggle")
    differ = {}
    for name, version in locked.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            differ[name] = (installed, version)
    assert not differ, f"installed != uv.lock (installed, locked): {differ}; run `make setup` (or `make lock` to update the lock)"


def test_dependencies_are_declared_for_users_elsewhere():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=!\[ ;]", d)[0].lower().replace("_", "-") for d in project["dependencies"]}
    for needed in ("torch", "numpy", "opencv-python-headless", "onnx", "onnxruntime", "onnxscript", "mlflow",
                   "modal", "datasets", "huggingface-hub", "kaggle", "six", "tqdm"):
        assert needed in deps, needed
    assert "opencv-python" not in deps  # needs libGL on servers
    torch_spec = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert "==" not in torch_spec  # loose: users install the build for their machine
    assert project["requires-python"] == ">=3.11"


def test_ci_runs_the_readme_test_command_and_nothing_else():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme


def test_every_user_command_has_a_console_entry_point_with_help():
    """Scenario: Console commands"""
    import shutil
    import subprocess
    import sys

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    expected = {"synthetic", "precompute", "train", "train-ellipse", "evaluate", "predict", "quantize", "pretrain", "finetune", "demo"}
    assert {name.removeprefix("visionassist-") for name in scripts} == expected
    bin_dir = Path(sys.executable).parent
    readme = (ROOT / "README.md").read_text()
    for name in scripts:
        executable = shutil.which(name, path=str(bin_dir))
        assert executable, f"{name} is not installed next to {sys.executable} (pip install -e .)"
        result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "usage:" in result.stdout, (name, result.stderr[-500:])
        assert f"`{name}`" in readme or f"{name} " in readme, f"{name} is not documented in the README"
