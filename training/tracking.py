"""Resilient MLflow tracking: training never waits on, or loses data to, a tracking server.

Every call is first appended to `<run_dir>/mlflow_journal.jsonl` (the local record), then sent. While the server
is unreachable, training continues with one warning; each attempt blocks a few seconds at most (HTTP retries
off, short timeouts, a health probe before sending), and sending resumes on a later call, at the end of the
run, or with

    python -m training.tracking sync RUN_DIR

Tracking URI: MLFLOW_TRACKING_URI if set, else an embedded sqlite store `<output_dir>/mlflow.db` with
artifacts in `<output_dir>/mlruns`. Credentials (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN) come from the
environment and are never logged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from training.files import atomic_write_bytes
from training.preprocess import HEIGHT, WIDTH

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

log = logging.getLogger(__name__)
JOURNAL = "mlflow_journal.jsonl"
STATE = "mlflow_state.json"
RETRY_SECONDS = 30.0  # after a failure, wait this long before probing the server again


def default_tracking_uri(output_dir: str | Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def server_reachable(uri: str, timeout: float = 2.0) -> bool:
    """True for local stores; for http(s) servers, whether GET /health answers within timeout."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


class Tracker:
    """Journal-first MLflow logging for one run. Only rank 0 creates one."""

    def __init__(self, run_dir: str | Path, tracking_uri: str, experiment_name: str, run_name: str, artifact_root: str | Path | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.journal_path = self.run_dir / JOURNAL
        self.state_path = self.run_dir / STATE
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.state = {
            "tracking_uri": tracking_uri,
            "experiment_name": experiment_name,
            "run_name": run_name,
            "artifact_root": str(artifact_root) if artifact_root else None,
            "run_id": None,
            "sent": 0,
            **state,
        }
        self._down_since: float | None = None
        self._warned = False

    # ------------------------------------------------------------------------------------------ API
    @property
    def run_id(self) -> str | None:
        return self.state["run_id"]

    def log_params(self, params: dict[str, Any]) -> None:
        self._record({"kind": "params", "params": {k: _param_str(v) for k, v in params.items()}})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._record({"kind": "tags", "tags": {k: str(v) for k, v in tags.items()}})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        values = {k: float(v) for k, v in metrics.items() if v is not None and _finite(v)}
        self._record({"kind": "metrics", "metrics": values, "step": step, "timestamp": int(time.time() * 1000)})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._record({"kind": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def log_onnx_model(self, path: str | Path, name: str = "model", input_shape: tuple[int, ...] = (-1, 1, HEIGHT, WIDTH), output_shapes: dict[str, tuple[int, ...]] | None = None) -> None:
        self._record({"kind": "onnx_model", "path": str(Path(path).resolve()), "name": name, "input_shape": list(input_shape),
                      "output_shapes": {k: list(v) for k, v in (output_shapes or {"logits": (-1, 2, HEIGHT, WIDTH)}).items()}})

    def log_dataset(self, name: str, digest: str, source: str, source_type: str, context: str, rows: int, columns: dict[str, str]) -> None:
        """A dataset input of the run (MLflow's Datasets panel): context is "training" or "validation"; columns maps
        each column the run reads to its dtype and shape."""
        self._record({"kind": "dataset", "name": name, "digest": digest, "source": source, "source_type": source_type, "context": context,
                      "rows": int(rows), "columns": dict(columns)})

    def register_model(self, name: str, metric: str, value: float, alias: str = "champion") -> None:
        """Registers the run's logged ONNX model (log_onnx_model first) as a new version of `name`, with the monitored
        metric as a version tag, and moves `alias` to it when it beats the version the alias points at (or none)."""
        self._record({"kind": "register", "name": name, "metric": metric, "value": float(value), "alias": alias})

    def finish(self, status: str = "FINISHED") -> bool:
        self._record({"kind": "end", "status": status}, flush=False)
        return self.flush(force=True)

    @property
    def pending(self) -> int:
        return len(self._entries()) - self.state["sent"]

    # ------------------------------------------------------------------------------------ internals
    def _record(self, entry: dict[str, Any], flush: bool = True) -> None:
        with open(self.journal_path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if flush:
            self.flush()

    def _entries(self) -> list[dict[str, Any]]:
        if not self.journal_path.exists():
            return []
        return [json.loads(line) for line in self.journal_path.read_text().splitlines() if line.strip()]

    def flush(self, force: bool = False) -> bool:
        """Sends every journaled entry not yet sent. Returns True when nothing is left pending."""
        entries = self._entries()
        if self.state["sent"] >= len(entries):
            return True
        if self._down_since is not None and not force and time.monotonic() - self._down_since < RETRY_SECONDS:
            return False
        uri = self.state["tracking_uri"]
        try:
            if not server_reachable(uri):
                raise ConnectionError(f"MLflow server {uri} is not reachable")
            client = self._client()
            run_id = self._ensure_run(client)
            for entry in entries[self.state["sent"] :]:
                self._send(client, run_id, entry)
                self.state["sent"] += 1
                self._save_state()
        except Exception as error:  # noqa: BLE001 - any failure: keep the journal, retry later
            self._down_since = time.monotonic()
            if not self._warned:
                log.warning("MLflow unavailable (%s); training continues, %d entries kept in %s and sent when it is back "
                            "(or run: python -m training.tracking sync %s)", _short(error), len(entries) - self.state["sent"], self.journal_path, self.run_dir)
                self._warned = True
            return False
        if self._warned:
            log.warning("MLflow reachable again: every pending entry has been sent")
        self._down_since, self._warned = None, False
        return True

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.state["tracking_uri"])

    def _ensure_run(self, client) -> str:
        if self.state["run_id"]:
            return self.state["run_id"]
        experiment = client.get_experiment_by_name(self.state["experiment_name"])
        if experiment is None:
            root = self.state["artifact_root"]
            experiment_id = client.create_experiment(self.state["experiment_name"], artifact_location=Path(root).resolve().as_uri() if root else None)
        else:
            experiment_id = experiment.experiment_id
        run = client.create_run(experiment_id, run_name=self.state["run_name"])
        self.state["run_id"] = run.info.run_id
        self._save_state()
        return run.info.run_id

    def _send(self, client, run_id: str, entry: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        kind = entry["kind"]
        if kind == "params":
            items = list(entry["params"].items())
            for start in range(0, len(items), 100):
                client.log_batch(run_id, params=[Param(k, v) for k, v in items[start : start + 100]])
        elif kind == "tags":
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in entry["tags"].items()])
        elif kind == "metrics":
            client.log_batch(run_id, metrics=[Metric(k, v, entry["timestamp"], entry["step"]) for k, v in entry["metrics"].items()])
        elif kind == "artifact":
            if Path(entry["path"]).exists():
                client.log_artifact(run_id, entry["path"], entry["artifact_path"])
            else:
                log.warning("artifact %s no longer exists; not logged", entry["path"])
        elif kind == "onnx_model":
            self._send_onnx_model(run_id, entry)
        elif kind == "dataset":
            self._send_dataset(client, run_id, entry)
        elif kind == "register":
            self._register(client, run_id, entry)
        elif kind == "end":
            client.set_terminated(run_id, status=entry["status"])

    def _send_onnx_model(self, run_id: str, entry: dict[str, Any]) -> None:
        import mlflow
        import numpy as np
        import onnx
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), tuple(entry["input_shape"]), "image")]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), tuple(shape), name) for name, shape in entry["output_shapes"].items()]),
        )
        import onnxruntime

        # Explicit requirements: no dependency inference (slow, and it shells out to `uv export` near a uv.lock).
        requirements = [f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"]
        mlflow.set_tracking_uri(self.state["tracking_uri"])
        with mlflow.start_run(run_id=run_id):
            mlflow.onnx.log_model(onnx.load(entry["path"]), name=entry["name"], signature=signature, pip_requirements=requirements)

    @staticmethod
    def _send_dataset(client, run_id: str, entry: dict[str, Any]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(entry["name"], entry["digest"], entry["source_type"], json.dumps({"uri": entry["source"]}),
                          profile=json.dumps({"num_rows": entry["rows"], "columns": entry["columns"]}))
        client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", entry["context"])])])

    def _register(self, client, run_id: str, entry: dict[str, Any]) -> None:
        import mlflow

        mlflow.set_tracking_uri(self.state["tracking_uri"])
        experiment_id = client.get_run(run_id).info.experiment_id
        models = mlflow.search_logged_models(experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'", output_format="list")
        if not models:
            raise RuntimeError(f"run {run_id} has no logged model to register")
        name, metric, value, alias = entry["name"], entry["metric"], entry["value"], entry["alias"]
        try:
            client.get_registered_model(name)
        except Exception:  # noqa: BLE001 - MlflowException RESOURCE_DOES_NOT_EXIST
            client.create_registered_model(name, description="TinyEfficientViT pupil segmentation, ONNX (visionassist-training)")
        version = client.create_model_version(name, models[-1].model_uri, run_id=run_id, model_id=models[-1].model_id, tags={metric: str(value)})
        try:
            current = client.get_model_version_by_alias(name, alias)
            best_so_far = float(current.tags.get(metric, "-inf"))
        except Exception:  # noqa: BLE001 - no version holds the alias yet
            best_so_far = float("-inf")
        if value > best_so_far:
            client.set_registered_model_alias(name, alias, version.version)

    def _save_state(self) -> None:
        atomic_write_bytes(self.state_path, json.dumps(self.state, indent=1).encode())


def _finite(value: Any) -> bool:
    try:
        return float(value) == float(value) and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


def _param_str(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
    return text[:6000]


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def sync(run_dir: str | Path, tracking_uri: str | None = None) -> int:
    """Sends a run's pending journal entries; returns how many are still pending (0: all sent)."""
    run_dir = Path(run_dir)
    state = json.loads((run_dir / STATE).read_text())
    tracker = Tracker(run_dir, state["tracking_uri"], state["experiment_name"], state["run_name"], state.get("artifact_root"))
    if tracking_uri:  # the recorded state wins in Tracker(); an explicit override replaces it
        tracker.state["tracking_uri"] = tracking_uri
    tracker.flush(force=True)
    return tracker.pending


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send a run's locally journaled MLflow entries to the tracking server.")
    sub = parser.add_subparsers(dest="command", required=True)
    sync_parser = sub.add_parser("sync", help="send what is pending for one or more run directories")
    sync_parser.add_argument("run_dirs", nargs="+")
    sync_parser.add_argument("--tracking-uri", help="override the URI recorded for the run")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    left = 0
    for run_dir in args.run_dirs:
        pending = sync(run_dir, args.tracking_uri)
        print(f"{run_dir}: {'all entries sent' if pending == 0 else f'{pending} entries still pending'}")
        left += pending
    return 0 if left == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
