"""Shared fixtures: one synthetic OpenEDS-like raw folder and its precomputed dataset per test session."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_DATASETS_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "visionassist-test-hf-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub from the tests
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

SYNTHETIC_FRAMES = 48  # seed 0 includes one closed-eye frame (train, index 6): 47 rows after precompute
SYNTHETIC_SEED = 0


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    from training.synthetic import generate

    out = tmp_path_factory.mktemp("openeds_raw")
    generate(out, SYNTHETIC_FRAMES, seed=SYNTHETIC_SEED)
    return out


@pytest.fixture(scope="session")
def precomputed(raw_dir) -> Path:
    """The raw folder after `precompute.py --skip-download --no-push` (dataset in <dir>/dataset)."""
    from training import precompute

    assert precompute.main(["--skip-download", "--no-push", "--output-dir", str(raw_dir)]) == 0
    return raw_dir


@pytest.fixture(scope="session")
def openeds_precomputed(tmp_path_factory) -> Path:
    """24 frames of the OpenEDS-calibrated family (seed 0), precomputed: where the shipped pretrained model segments
    (pupil IoU ~0.5-0.7), for the evaluate / predict / quantize tests that need a model that finds pupils."""
    from training import precompute
    from training.synthetic import generate

    out = tmp_path_factory.mktemp("openeds_family")
    generate(out, 24, seed=SYNTHETIC_SEED, workers=1, families=["openeds"])
    assert precompute.main(["--skip-download", "--no-push", "--output-dir", str(out), "--workers", "1"]) == 0
    return out


def run_python(args, cwd=ROOT, env=None, timeout=600):
    import subprocess

    return subprocess.run([sys.executable, *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
