"""Precompute OpenEDS for training (the library behind the root `precompute.py` command): Kaggle download ->
binarize pupil -> skip empty masks -> gamma 0.8 -> CLAHE (1.5, 8x8) -> ellipse fit -> spatial weights -> signed
distance maps -> parquet shards -> HF dataset.

    python precompute.py                                   # download, process, push to --hf-repo
    python precompute.py --skip-download --no-push --output-dir D     # raw data already in D
    python precompute.py --skip-download --no-push --output-dir FRAMES   # your frames: FRAMES/images + masks (any size)
    python precompute.py --validate --skip-download --no-push --output-dir D   # recompute a sample, compare
    python precompute.py --validate --hf-repo USER/NAME --output-dir D        # same, against the pushed copy

Your own frames (FRAMES/images/*.png|jpg, FRAMES/masks/<stem>.png, pupil = non-zero) are letterboxed to the model
input as training and evaluate see them, and split into train and validation by person (the file name's prefix up
to the first underscore; training.data.grouped_split).

Output: D/dataset/{train,validation,test}/*.parquet and D/dataset/README.md (dataset card), so that
`datasets.load_dataset("D/dataset")` returns the splits. Shards are written atomically and named after a hash
of their inputs: a re-run reuses finished shards, redoes only what is missing or changed, and removes shards
that no longer belong. Credentials: Kaggle (KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json) and
Hugging Face (HF_TOKEN) come from the environment, never from flags.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training import preprocess
from training.data import (
    ARRAY_COLUMNS,
    SCALAR_COLUMNS,
    SPLIT_NAMES,
    BadInput,
    ParquetSplit,
    frame_pairs,
    grouped_split,
    is_frames_folder,
    person_of,
    raw_split_dirs,
    read_frame_pair,
    read_raw_pair,
    rows_to_table,
    subject_of,
)
from training.files import atomic_path, atomic_write_bytes
from training.preprocess import HEIGHT, WIDTH

KAGGLE_DATASET = "soumicksarker/openeds-dataset"
DEFAULT_HF_REPO = "Conner/sddec25-01"
PIPELINE_VERSION = "2"  # bump when the preprocessing changes: every shard is then rebuilt
EXIT_BAD_INPUT, EXIT_CREDENTIALS, EXIT_MISMATCH = 1, 2, 3
log = logging.getLogger("precompute")


class CredentialsError(RuntimeError):
    pass


class DownloadError(RuntimeError):
    pass


# -------------------------------------------------------------------------------------------- download
CREDENTIALS_HELP = (
    "Set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN) in the environment, or save kaggle.json from "
    "https://www.kaggle.com/settings (API > Create New Token) to ~/.kaggle/kaggle.json with mode 600. If the data is "
    "already downloaded, pass --skip-download --output-dir DIR."
)


def kaggle_credentials_problem(environ: dict[str, str] | None = None, home: Path | None = None) -> str | None:
    """What is wrong with the Kaggle credentials this process would use, or None when some are given.

    Empty variables count as unset (what a CI job or a secret without a value leaves behind), and a username
    without a key (or the reverse) is an error, not a cue to fall back on anything else: the installed client would
    otherwise try an anonymous download and fail later with a network error. Files: kaggle.json (KAGGLE_CONFIG_DIR,
    ~/.kaggle or ~/.config/kaggle) with a username and a key, an access_token file, or OAuth credentials.json.
    """
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    if environ.get("KAGGLE_API_TOKEN", "").strip():
        return None
    user, key = environ.get("KAGGLE_USERNAME", "").strip(), environ.get("KAGGLE_KEY", "").strip()
    if user and key:
        return None
    if user or key:
        missing, given = ("KAGGLE_KEY", "KAGGLE_USERNAME") if user else ("KAGGLE_USERNAME", "KAGGLE_KEY")
        return f"{missing} is {'empty' if missing in environ else 'unset'} while {given} is set"
    dirs = [Path(environ["KAGGLE_CONFIG_DIR"])] if environ.get("KAGGLE_CONFIG_DIR", "").strip() else [
        home / ".kaggle", Path(environ.get("XDG_CONFIG_HOME", "").strip() or home / ".config") / "kaggle"]
    for folder in dirs:
        try:
            values = json.loads((folder / "kaggle.json").read_text())
        except (OSError, ValueError):
            values = None
        if isinstance(values, dict) and str(values.get("username", "")).strip() and str(values.get("key", "")).strip():
            return None
    for token in (home / ".kaggle" / "access_token", home / ".kaggle" / "access_token.txt", home / ".kaggle" / "credentials.json"):
        try:
            if token.read_text().strip():
                return None
        except OSError:
            pass
    named = [name for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN") if name in environ]
    return f"{' and '.join(named)} {'is' if len(named) == 1 else 'are'} empty and no kaggle.json was found" if named else "no KAGGLE_* variables and no kaggle.json"


def download_openeds(output_dir: Path) -> None:
    """Downloads and unzips the Kaggle dataset into output_dir. Raises CredentialsError without credentials.

    The credentials are checked first (kaggle_credentials_problem); empty variables are then hidden from the client,
    so that it reads kaggle.json. kaggle is imported here, not at module level: older releases authenticate on
    import, print to stdout and raise SystemExit or OSError without credentials; newer ones swallow that at
    import, and `KaggleApi().authenticate()` prints help and raises SystemExit. All of these become one
    CredentialsError.
    """
    problem = kaggle_credentials_problem()
    if problem:
        raise CredentialsError(f"Kaggle credentials not found ({problem}). {CREDENTIALS_HELP}")
    empty = {name: os.environ.pop(name) for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN") if name in os.environ and not os.environ[name].strip()}
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except (SystemExit, OSError, ValueError) as error:
        raise CredentialsError(f"Kaggle credentials not accepted by the kaggle client. {CREDENTIALS_HELP}") from error
    finally:
        os.environ.update(empty)
    output_dir.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from Kaggle into %s", KAGGLE_DATASET, output_dir)
    try:
        api.dataset_download_files(KAGGLE_DATASET, path=str(output_dir), unzip=True, quiet=False)
    except Exception as error:  # noqa: BLE001 - requests/kagglesdk raise many types
        raise DownloadError(f"downloading {KAGGLE_DATASET} into {output_dir} failed: {error}") from error


def raw_splits(output_dir: Path) -> dict[str, tuple[list[tuple[str, str]], list[str]]]:
    """split -> ((image, label) path pairs sorted by name, bad-input messages for images without a label).

    A raw OpenEDS download (either known layout: {split}/images + labels/*.npy), or a folder of your own frames
    (images/ + masks/*.png, any size), split into train and validation by person (data.grouped_split). Raises if
    neither is there."""
    if is_frames_folder(output_dir):
        pairs = frame_pairs(output_dir)
        if not pairs:
            raise FileNotFoundError(f"{output_dir / 'images'}: no images")
        sides = grouped_split([image.name for image, _ in pairs])
        found = {}
        for split in ("train", "validation"):
            chosen = [(image, mask) for image, mask in pairs if sides[image.name] == split]
            found[split] = ([(str(image), str(mask)) for image, mask in chosen if mask.exists()],
                            [f"{image}: no mask {mask.name} in {mask.parent}" for image, mask in chosen if not mask.exists()])
        return found
    found = {split: dirs for split in SPLIT_NAMES if (dirs := raw_split_dirs(output_dir, split))}
    if not found:
        raise FileNotFoundError(
            f"{output_dir}: no OpenEDS splits found (looked for {{train,validation,test}}/images and /labels, "
            "also below openEDS/ and openEDS/openEDS/) and no images/ + masks/ folders of your own frames"
        )
    return {split: list_pairs(images_dir, labels_dir) for split, (images_dir, labels_dir) in found.items()}


# ------------------------------------------------------------------------------------------ processing
def process_pair(pair: tuple[str, str], keep_empty: bool = False) -> tuple[str, Any]:
    """One raw frame -> ("ok", row) | ("empty", name) | ("bad", message). Runs in worker processes. An OpenEDS frame
    (label .npy) or one of your own frames (mask .png, any size: letterboxed as training and evaluate see it).
    keep_empty: a frame without a pupil gives ("empty", row), its row (all-zero label) to be kept."""
    image_path, label_path = Path(pair[0]), Path(pair[1])
    own = label_path.suffix == ".png"
    try:
        image, label = read_frame_pair(image_path, label_path) if own else read_raw_pair(image_path, label_path)
    except BadInput as error:
        return "bad", str(error)
    mask = label if own else preprocess.binarize(label)
    pupil = bool(mask.any())
    if not pupil and not keep_empty:
        return "empty", image_path.name
    row = preprocess.frame_sample(image, mask) if own else preprocess.preprocess_sample(image, label)
    row.update(filename=image_path.name, subject=person_of(image_path.name) if own else subject_of(image_path.name))
    return "ok" if pupil else "empty", row


def list_pairs(images_dir: Path, labels_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(image, label) path pairs sorted by name, and a bad-input message for each image without a label."""
    pairs, bad = [], []
    for image_path in sorted(images_dir.glob("*.png")):
        label_path = labels_dir / f"{image_path.stem}.npy"
        if label_path.exists():
            pairs.append((str(image_path), str(label_path)))
        else:
            bad.append(f"{image_path}: no label file {label_path.name}")
    return pairs, bad


def shard_key(pairs: list[tuple[str, str]], keep_empty: bool = False) -> str:
    digest = hashlib.sha1(PIPELINE_VERSION.encode() + (b":keep-empty" if keep_empty else b""))
    for image_path, label_path in pairs:
        for path in (image_path, label_path):
            stat = os.stat(path)
            digest.update(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


@dataclass
class SplitSummary:
    found: int = 0  # frames found (bad ones included)
    written: int = 0
    empty: int = 0  # frames without a pupil: skipped, or with keep_empty written (and counted in `written`)
    keep_empty: bool = False
    bad: list[str] = field(default_factory=list)
    shards_reused: int = 0
    shards_written: int = 0


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def write_shard(task: tuple[str, list[tuple[str, str]], str, str, bool, bool], writer: ThreadPoolExecutor | None = None) -> dict[str, Any] | Future:
    """Processes one shard and writes its parquet file and state record atomically (runs in a worker).

    Returns the state: rows written, frames without a pupil (skipped, or kept as rows when the task's keep_empty is
    set), bad-input messages. Under strict, a bad input aborts the shard before anything is written (the caller then
    stops). With a writer thread, the write is handed to it and a Future of the state is returned.
    """
    name, pairs, split_dir, state_dir, strict, keep_empty = task
    rows, empty, bad = [], 0, []
    for status, value in (process_pair(pair, keep_empty) for pair in pairs):
        if status == "ok":
            rows.append(value)
        elif status == "empty":
            empty += 1
            if keep_empty:
                rows.append(value)
        else:
            bad.append(value)
            if strict:
                return {"name": name, "rows": 0, "empty": empty, "bad": bad, "aborted": True, "frames": len(pairs)}
    state = {"rows": len(rows), "empty": empty, "bad": bad}
    if writer is not None:  # encode and write in the writer thread while the caller computes the next shard
        return writer.submit(store_shard, name, rows, state, split_dir, state_dir, len(pairs))
    return store_shard(name, rows, state, split_dir, state_dir, len(pairs))


# Parquet encoding: the array columns are written without dictionaries or statistics (both are useless on pixel
# data and took half the write time), in v2 data pages (levels stored apart from the values, ~0.4 ms a row less to
# write), and the image and distance maps byte-stream-split: uint8 pixels are stored as parquet INT32, so the split
# puts their three zero bytes apart (image 261 -> 185 KiB, written 2x and read 1.4x faster; needs pyarrow >= 16), and
# the distance maps' zeroed low bytes (preprocess.DIST_MAP_BITS) compress to nothing (790 -> 430 KiB). The mostly-zero
# label and weights compress as well without the split, and faster. Lossless: the shards hold preprocess's values exactly.
PARQUET_OPTIONS = {
    "row_group_size": 1,  # random access: one row group per sample
    "compression": "zstd",
    "data_page_version": "2.0",
    "use_dictionary": ["filename", "subject"],
    "write_statistics": [*SCALAR_COLUMNS, "filename", "subject", "preprocessed"],
    "use_byte_stream_split": [name + ".list.element" * len(shape) for name, (shape, dtype) in ARRAY_COLUMNS.items() if name in ("image", "dist_map")],
    "write_batch_size": 1 << 16,
}


def store_shard(name: str, rows: list[dict[str, Any]], state: dict[str, Any], split_dir: str, state_dir: str, frames: int) -> dict[str, Any]:
    """Writes one shard's parquet file, then its state record (its presence means the shard is complete)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if rows:  # pyarrow writes the file itself, without holding the GIL or a second copy in Python memory
        with atomic_path(Path(split_dir) / f"{name}.parquet") as tmp, pa.OSFile(str(tmp), "wb") as sink:
            pq.write_table(rows_to_table(rows), sink, **PARQUET_OPTIONS)
    atomic_write_bytes(Path(state_dir) / f"{name}.json", json.dumps(state).encode())
    return {"name": name, **state, "frames": frames}


def _pipelined(tasks: list[tuple], writer: ThreadPoolExecutor) -> Iterable[dict[str, Any]]:
    """write_shard over tasks in order, each shard's encoding and write (two writer threads) overlapping the next
    shard's compute; at most two shards wait for the writers, so memory stays at a few shards."""
    pending: collections.deque = collections.deque()
    for task in tasks:
        pending.append(write_shard(task, writer))
        while len(pending) > 2:
            yield _done(pending.popleft())
    while pending:
        yield _done(pending.popleft())


def _done(result: dict[str, Any] | Future) -> dict[str, Any]:
    return result.result() if isinstance(result, Future) else result


def plan_split(split: str, pairs: list[tuple[str, str]], dataset_dir: Path, state_dir: Path, shard_size: int,
               keep_empty: bool = False) -> tuple[list[dict], list[tuple]]:
    """Splits a split's frames into shards: (states of shards already complete, tasks for the rest)."""
    split_dir = dataset_dir / split
    split_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    done, todo = [], []
    for index, shard in enumerate(_chunks(pairs, shard_size)):
        name = f"{split}-{index:05d}-{shard_key(shard, keep_empty)}"
        state_path = state_dir / f"{name}.json"
        if state_path.exists():
            state = json.loads(state_path.read_text())
            if state["rows"] == 0 or (split_dir / f"{name}.parquet").exists():
                done.append({"name": name, **state, "frames": len(shard)})
                continue
        todo.append((name, shard, str(split_dir), str(state_dir), False, keep_empty))
    return done, todo


def remove_stale(split: str, dataset_dir: Path, state_dir: Path, keep: set[str]) -> None:
    for stale in [*(dataset_dir / split).glob(f"{split}-*.parquet"), *state_dir.glob(f"{split}-*.json")]:
        if stale.stem not in keep:
            stale.unlink()


def build_dataset(output_dir: Path, workers: int = 0, limit: int = 0, strict: bool = False, shard_size: int = 32,
                  map_shards: Callable[[list[tuple]], Iterable[dict[str, Any]]] | None = None,
                  keep_empty: Collection[str] = ()) -> dict[str, SplitSummary]:
    """Writes every split's shards under output_dir/dataset; shards run in parallel, one per worker task. Frames
    without a pupil are skipped (the OpenEDS rule), except in the splits named in keep_empty: there they are rows
    with an all-zero label (negatives: a closed eye), as `training.pretrain --closed-share` uses for train.

    map_shards(tasks) -> states, in order, replaces the local process pool (the Modal app passes
    `write_shard_remote.map`, which runs write_shard in one container per shard).
    """
    from tqdm import tqdm

    unknown = sorted(set(keep_empty) - set(SPLIT_NAMES))
    if unknown:
        raise ValueError(f"keep_empty: unknown splits {unknown}; choose from {list(SPLIT_NAMES)}")
    splits = raw_splits(output_dir)
    dataset_dir, state_dir = output_dir / "dataset", output_dir / ".precompute_state"
    summaries: dict[str, SplitSummary] = {}
    done, todo, names = [], [], {}
    for split, (pairs, missing) in splits.items():
        if missing and strict:
            raise BadInput(missing[0])
        for message in missing:
            log.warning("skipping bad input: %s", message)
        pairs = pairs[:limit] if limit else pairs
        log.info("found %d frames in %s", len(pairs) + len(missing), split)
        summaries[split] = SplitSummary(found=len(pairs) + len(missing), bad=list(missing), keep_empty=split in keep_empty)
        split_done, split_todo = plan_split(split, pairs, dataset_dir, state_dir, shard_size, split in keep_empty)
        done += [(split, state) for state in split_done]
        todo += [(split, (*task[:4], strict, task[5])) for task in split_todo]
        names[split] = {state["name"] for state in split_done} | {task[0] for task in split_todo}
    workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    with contextlib.ExitStack() as stack:
        if map_shards is None:  # processes and writer threads use every core: OpenCV's own threads would only compete
            stack.enter_context(_opencv_threads(1))
        progress = stack.enter_context(tqdm(total=sum(s.found for s in summaries.values()), desc="precompute", unit="img", disable=None))
        if map_shards is not None:
            results = map_shards([task for _, task in todo])
        elif workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers))
            results = pool.map(write_shard, [task for _, task in todo])
        else:
            results = _pipelined([task for _, task in todo], stack.enter_context(ThreadPoolExecutor(2)))
        finished = [(split, state, True) for split, state in done]
        for (split, _), state in zip(todo, results):
            finished.append((split, state, False))
        for split, state, reused in finished:
            summary = summaries[split]
            if state.get("aborted") or (strict and state["bad"]):  # also bad inputs a lenient run recorded in a reused shard
                raise BadInput(state["bad"][0])
            for message in state["bad"] if not reused else []:
                log.warning("skipping bad input: %s", message)
            summary.written += state["rows"]
            summary.empty += state["empty"]
            summary.bad += state["bad"]
            summary.shards_reused += reused
            summary.shards_written += not reused
            progress.update(state["frames"])
    for split in summaries:
        remove_stale(split, dataset_dir, state_dir, names[split])
    write_dataset_card(dataset_dir, summaries)
    return summaries


@contextlib.contextmanager
def _opencv_threads(count: int) -> Iterable[None]:
    """OpenCV's thread count for the block (forked workers inherit it), restored after. The results do not depend on it
    (preprocess.exact_distance)."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def content_fingerprint(dataset_dir: Path) -> str:
    """A digest of the shards under dataset_dir (split, file name, size): it changes whenever the rows do, since shard
    names carry a hash of their inputs and settings."""
    digest = hashlib.sha256()
    for path in sorted(dataset_dir.glob("*/*.parquet")):
        digest.update(f"{path.parent.name}/{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def write_dataset_card(dataset_dir: Path, summaries: dict[str, SplitSummary]) -> None:
    """README.md with the `configs` block `datasets.load_dataset` reads. Its `description` carries the shards'
    content fingerprint: `datasets` keys its cache by a hash of the builder configs, which without it would be the
    same for every precompute output (relative patterns, a folder named `dataset`), so a second output elsewhere or a
    re-run with other frames would load the first one's cached rows."""
    configs = "\n".join(f"  - split: {split}\n    path: {split}/*.parquet" for split, s in summaries.items() if s.written)
    fingerprint = content_fingerprint(dataset_dir)
    counts = "\n".join(f"| {split} | {s.written} | {s.empty}{' kept' if s.keep_empty else ''} | {len(s.bad)} |" for split, s in summaries.items())
    kept_in = [split for split, s in summaries.items() if s.keep_empty]
    kept = f" (kept in {', '.join(kept_in)}: rows with an all-zero label, a closed eye)" if kept_in else ""
    empty_header = "empty pupil (skipped or kept)" if kept_in else "skipped (empty pupil)"
    card = f"""---
license: other
task_categories:
- image-segmentation
tags:
- eye-tracking
- pupil-segmentation
- openeds
configs:
- config_name: default
  description: "visionassist precompute, content {fingerprint}"
  data_files:
{configs}
---
# OpenEDS pupil segmentation, precomputed

Made by `precompute.py` (visionassist-training, pipeline version {PIPELINE_VERSION}) from the OpenEDS dataset
(Kaggle `{KAGGLE_DATASET}`): binarized pupil label, frames with an empty pupil skipped{kept}, image gamma 0.8 then
CLAHE (clip 1.5, 8x8 tiles), ellipse fit of the pupil, boundary spatial weights and signed distance maps.

| split | rows | {empty_header} | skipped (bad input) |
|---|---|---|---|
{counts}

## Columns
| column | type | meaning |
|---|---|---|
| image | uint8 [{HEIGHT}, {WIDTH}] | infrared frame after gamma 0.8 + CLAHE |
| label | uint8 [{HEIGHT}, {WIDTH}] | pupil = 1, else 0 |
| spatial_weights | float32 [{HEIGHT}, {WIDTH}] | {preprocess.BOUNDARY_WEIGHT:g} on the pupil boundary band, 0 elsewhere (CE weight is 1 + this) |
| dist_map | float32 [2, {HEIGHT}, {WIDTH}] | signed distance maps of background and pupil (<= 0 inside), / image diagonal; {preprocess.DIST_MAP_BITS} significant bits (within 2^-{preprocess.DIST_MAP_BITS} of exact) |
| cx, cy, rx, ry | float32 | pupil ellipse centre and semi-axes, x / {WIDTH} and y / {HEIGHT} |
| angle | float32 | ellipse rotation, degrees (cv2.fitEllipse) |
| filename, subject | string | source frame and subject id (empty if the name has none) |
| preprocessed | bool | True: gamma and CLAHE already applied |

Load with `datasets.load_dataset(path_or_repo)`; `training.data` reads it without upcasting uint8 columns.
"""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dataset_dir / "README.md", card.encode())


# ------------------------------------------------------------------------------------------------ push
def with_retries(action: Callable[[], Any], what: str, retries: int = 5, backoff: float = 2.0, sleep=time.sleep) -> Any:
    for attempt in range(1, retries + 1):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - network errors come in many types
            if attempt == retries:
                raise RuntimeError(f"{what} failed after {retries} attempts: {error}") from error
            delay = backoff * 2 ** (attempt - 1)
            log.warning("%s failed (%s); retrying in %.0f s (%d/%d)", what, error, delay, attempt, retries)
            sleep(delay)


def push_to_hub(dataset_dir: Path, repo_id: str, api=None, retries: int = 5, backoff: float = 2.0, sleep=time.sleep) -> list[str]:
    """Makes the dataset repo hold what dataset_dir holds; returns what was uploaded.

    Shards the repo lacks are uploaded, shards the repo has but dataset_dir no longer does (a re-run replaced them)
    are deleted, and the card goes last, every time (it announces complete splits and carries the content
    fingerprint). A failure keeps the local shards; running again uploads only what is still missing. The token comes
    from HF_TOKEN (or the huggingface-cli login), never from a flag.
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    with_retries(lambda: api.create_repo(repo_id, repo_type="dataset", exist_ok=True), f"create {repo_id}", retries, backoff, sleep)
    remote = set(with_retries(lambda: api.list_repo_files(repo_id, repo_type="dataset"), f"list {repo_id}", retries, backoff, sleep))
    local = sorted(p for p in dataset_dir.rglob("*") if p.is_file())
    local.sort(key=lambda p: p.name == "README.md")  # the card last: it announces complete splits
    names = {path.relative_to(dataset_dir).as_posix() for path in local}
    stale = sorted(rel for rel in remote - names if rel.endswith(".parquet") and rel.split("/")[0] in SPLIT_NAMES)
    uploaded = []
    for path in local:
        rel = path.relative_to(dataset_dir).as_posix()
        if rel in remote and rel != "README.md":
            continue
        if rel == "README.md":
            for old in stale:  # before the card: it then describes exactly the shards that remain
                with_retries(lambda: api.delete_file(old, repo_id=repo_id, repo_type="dataset", commit_message=f"Remove {old}"), f"delete {old}",
                             retries, backoff, sleep)
                log.info("deleted %s (no longer in %s)", old, dataset_dir)
        with_retries(
            lambda: api.upload_file(path_or_fileobj=str(path), path_in_repo=rel, repo_id=repo_id, repo_type="dataset", commit_message=f"Add {rel}"),
            f"upload {rel}",
            retries,
            backoff,
            sleep,
        )
        uploaded.append(rel)
        log.info("uploaded %s", rel)
    return uploaded


# -------------------------------------------------------------------------------------------- validate
def validate(output_dir: Path, hf_repo: str | None = None, per_split: int = 4) -> list[str]:
    """Recomputes up to `per_split` rows per split from the raw files and compares every column.

    Returns the mismatches (empty: valid). Reads the local dataset, or the pushed one when hf_repo is given.
    """
    problems: list[str] = []
    checked = 0
    for split, (pairs, _) in raw_splits(output_dir).items():
        by_name = {Path(image).name: (image, label) for image, label in pairs}
        if hf_repo:
            from datasets import load_dataset

            from training.data import table_to_samples

            table = load_dataset(hf_repo, split=split).with_format("arrow")
            read = lambda i: table_to_samples(table[i : i + 1])[0]  # noqa: E731
            count = len(table)
        else:
            folder = output_dir / "dataset" / split
            if not any(folder.glob("*.parquet")):
                problems.append(f"{folder}: no shards for split {split}")
                continue
            stored = ParquetSplit(folder)
            read, count = stored.read_row, len(stored)
        for index in np.linspace(0, count - 1, min(per_split, count)).round().astype(int):
            row = read(int(index))
            if row["filename"] not in by_name:
                problems.append(f"{split}/{row['filename']}: no such raw frame")
                continue
            _, expected = process_pair(by_name[row["filename"]], keep_empty=True)  # a stored row without a pupil was kept
            if isinstance(expected, str):
                problems.append(f"{split}/{row['filename']}: the raw frame gives no row now ({expected})")
                continue
            for column, value in expected.items():
                if not _same(row.get(column), value):
                    problems.append(f"{split}/{row['filename']}: column {column} differs from recomputation")
            checked += 1
    log.info("validated %d rows: %d mismatches", checked, len(problems))
    return problems


def _same(stored: Any, expected: Any) -> bool:
    if isinstance(expected, np.ndarray):
        stored = np.asarray(stored)
        if stored.shape != expected.shape:
            return False
        if expected.dtype.kind == "f":
            return bool(np.allclose(stored, expected, atol=1e-6, equal_nan=True))
        return bool(np.array_equal(stored, expected))
    if isinstance(expected, (float, np.floating)):
        return bool(np.isclose(float(stored), float(expected), atol=1e-6, equal_nan=True))
    return stored == expected


# ------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf-repo", default=DEFAULT_HF_REPO, help="HuggingFace dataset repo to push to / validate")
    parser.add_argument("--output-dir", default="./precompute_output", type=Path)
    parser.add_argument("--no-push", action="store_true", help="keep the dataset local")
    parser.add_argument("--validate", action="store_true", help="recompute a sample from the raw files and compare")
    parser.add_argument("--skip-download", action="store_true", help="use raw data already in --output-dir")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many frames per split (0: all)")
    parser.add_argument("--strict", action="store_true", help="bad input files are fatal")
    parser.add_argument("--shard-size", type=int, default=32, help="rows per parquet shard")
    parser.add_argument("--keep-empty", nargs="+", default=[], choices=SPLIT_NAMES, metavar="SPLIT",
                        help="keep the frames without a pupil of these splits as rows with an all-zero label (default: skip them)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # root stays at WARNING: third-party INFO stays quiet
    log.setLevel(logging.INFO)
    start = time.perf_counter()
    try:
        if not args.skip_download and raw_split_dirs(args.output_dir, "train") is None and not is_frames_folder(args.output_dir):
            download_openeds(args.output_dir)
        elif not args.skip_download:
            log.info("raw data already in %s: not downloading again", args.output_dir)
        if args.validate:
            problems = validate(args.output_dir, None if args.no_push else args.hf_repo)
            for problem in problems:
                log.error(problem)
            print(f"validate: {'OK' if not problems else f'{len(problems)} mismatches'}")
            return EXIT_MISMATCH if problems else 0
        summaries = build_dataset(args.output_dir, args.workers, args.limit, args.strict, args.shard_size, keep_empty=args.keep_empty)
        if not args.no_push:
            push_to_hub(args.output_dir / "dataset", args.hf_repo)
    except CredentialsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CREDENTIALS
    except (BadInput, FileNotFoundError, DownloadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    seconds = time.perf_counter() - start
    total = sum(s.found for s in summaries.values())
    parts = [f"{split} {s.written} written, {s.empty} empty {'kept' if s.keep_empty else 'skipped'}, {len(s.bad)} bad" for split, s in summaries.items()]
    bad = sum(len(s.bad) for s in summaries.values())
    print(f"precompute: {'; '.join(parts)}; {total} frames in {seconds:.1f} s ({total / max(seconds, 1e-9):.1f} img/s); "
          f"{bad} bad inputs skipped; dataset at {args.output_dir / 'dataset'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
