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
    expected = {"synthetic", "precompute", "train", "train-ellipse", "evaluate", "predict", "quantize", "pretrain", "demo"}
    assert {name.removeprefix("visionassist-") for name in scripts} == expected
    bin_dir = Path(sys.executable).parent
    readme = (ROOT / "README.md").read_text()
    for name in scripts:
        executable = shutil.which(name, path=str(bin_dir))
        assert executable, f"{name} is not installed next to {sys.executable} (pip install -e .)"
        result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "usage:" in result.stdout, (name, result.stderr[-500:])
        assert f"`{name}`" in readme or f"{name} " in readme, f"{name} is not documented in the README"
