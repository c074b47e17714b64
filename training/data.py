"""Dataset loading for training: sources, schema and tensors (augmentation: training.augment, on the device).

Sources (`open_split(spec, split)`):
- a local precompute output (`<dir>/dataset` or `<dir>` holding split folders of parquet shards), read shard
  by shard with pyarrow (one row group per sample: random access without an Arrow cache copy);
- a HuggingFace dataset repo id (e.g. `Conner/sddec25-01`), through `datasets.load_dataset`;
- a raw OpenEDS folder (`<dir>/<split>/images/*.png` + `labels/*.npy`, either Kaggle layout): preprocessing
  runs at load time with the same functions precompute uses.
Rows whose `preprocessed` flag is False get gamma + CLAHE at load time; preprocessed rows are used as stored.

Samples are dicts of numpy arrays in their stored dtypes (image/label uint8, maps float32): never the 8x
int64 upcast of the `datasets` numpy format.
"""

from __future__ import annotations

import bisect
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from training import preprocess

log = logging.getLogger(__name__)

HEIGHT, WIDTH = preprocess.HEIGHT, preprocess.WIDTH
SPLIT_NAMES = ("train", "validation", "test")
RAW_LAYOUTS = ("", "openEDS", "openEDS/openEDS")  # Kaggle download, with or without the extra levels
ARRAY_COLUMNS = {  # name: (shape, numpy dtype)
    "image": ((HEIGHT, WIDTH), np.uint8),
    "label": ((HEIGHT, WIDTH), np.uint8),
    "spatial_weights": ((HEIGHT, WIDTH), np.float32),
    "dist_map": ((2, HEIGHT, WIDTH), np.float32),
}
SCALAR_COLUMNS = ("cx", "cy", "rx", "ry", "angle")


def dataset_features():
    """The HuggingFace schema of the precomputed dataset (as published in Conner/sddec25-01, plus angle/subject)."""
    from datasets import Array2D, Array3D, Features, Value

    return Features(
        {
            "image": Array2D((HEIGHT, WIDTH), "uint8"),
            "label": Array2D((HEIGHT, WIDTH), "uint8"),
            "spatial_weights": Array2D((HEIGHT, WIDTH), "float32"),
            "dist_map": Array3D((2, HEIGHT, WIDTH), "float32"),
            **{name: Value("float32") for name in SCALAR_COLUMNS},
            "filename": Value("string"),
            "subject": Value("string"),
            "preprocessed": Value("bool"),
        }
    )


def _nested_list_array(stack: np.ndarray) -> pa.Array:
    """(N, *dims) numpy -> nested Arrow ListArray (the storage of datasets' ArrayXD) without Python loops."""
    flat = np.ascontiguousarray(stack).reshape(-1)
    out: pa.Array = pa.Array.from_buffers(pa.from_numpy_dtype(flat.dtype), len(flat), [None, pa.py_buffer(flat)])  # wraps, no copy
    for axis in range(stack.ndim - 1, 0, -1):
        length, count = stack.shape[axis], int(np.prod(stack.shape[:axis]))
        out = pa.ListArray.from_arrays(pa.array(np.arange(0, (count + 1) * length, length, dtype=np.int32)), out)
    return out


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Sample dicts -> an Arrow table with the dataset schema (HF feature metadata included)."""
    schema = dataset_features().arrow_schema
    columns = []
    for field in schema:
        values = [row[field.name] for row in rows]
        if field.name in ARRAY_COLUMNS:  # one chunk per row, each wrapping the row's own buffer: no stacked copy
            columns.append(pa.chunked_array([pa.ExtensionArray.from_storage(field.type, _nested_list_array(value[None])) for value in values], type=field.type))
        else:
            columns.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _column_to_numpy(column: pa.ChunkedArray | pa.Array, shape: tuple[int, ...], dtype) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    for _ in shape:
        array = array.flatten()
    return array.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(-1, *shape)


def table_to_samples(table: pa.Table) -> list[dict[str, Any]]:
    """Arrow rows -> sample dicts of numpy arrays in their stored dtypes."""
    arrays = {name: _column_to_numpy(table.column(name), shape, dtype) for name, (shape, dtype) in ARRAY_COLUMNS.items() if name in table.column_names}
    samples = []
    for i in range(table.num_rows):
        sample = {name: arrays[name][i] for name in arrays}
        for name in (*SCALAR_COLUMNS, "filename", "subject", "preprocessed"):
            if name in table.column_names:
                value = table.column(name)[i].as_py()
                sample[name] = np.float32(np.nan if value is None else value) if name in SCALAR_COLUMNS else value
        samples.append(sample)
    return samples


def finish_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Applies runtime preprocessing to rows not marked preprocessed, and fits the pupil ellipse of rows that
    lack ellipse columns (one code path for every source)."""
    if not sample.get("preprocessed", False):
        sample = {**sample, "image": preprocess.preprocess_image(sample["image"]), "preprocessed": True}
    if "label" in sample and any(name not in sample for name in SCALAR_COLUMNS):
        sample = {**sample, **preprocess.ellipse_columns(sample["label"])}
    return sample


# ----------------------------------------------------------------------------------------------- sources
class ParquetSplit(Dataset):
    """Random access over a split folder of parquet shards written by precompute (one row group per row)."""

    def __init__(self, folder: Path, columns: list[str] | None = None) -> None:
        self.columns = columns  # read only these (None: all)
        self.files = sorted(folder.glob("*.parquet"))
        if not self.files:
            raise FileNotFoundError(f"{folder}: no parquet shards")
        counts = [pq.ParquetFile(f).metadata.num_rows for f in self.files]
        self.offsets = np.cumsum([0, *counts]).tolist()
        self._handles: dict[int, tuple[pq.ParquetFile, list[int]]] = {}

    def __len__(self) -> int:
        return self.offsets[-1]

    def _handle(self, file_index: int) -> tuple[pq.ParquetFile, list[int]]:
        if file_index not in self._handles:  # opened lazily, so each DataLoader worker has its own
            handle = pq.ParquetFile(self.files[file_index])
            sizes = [handle.metadata.row_group(g).num_rows for g in range(handle.num_row_groups)]
            self._handles[file_index] = (handle, np.cumsum([0, *sizes]).tolist())
        return self._handles[file_index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return finish_sample(self.read_row(index))

    def read_row(self, index: int) -> dict[str, Any]:
        """The row exactly as stored."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        file_index = bisect.bisect_right(self.offsets, index) - 1
        row = index - self.offsets[file_index]
        handle, group_offsets = self._handle(file_index)
        group = bisect.bisect_right(group_offsets, row) - 1
        table = handle.read_row_group(group, columns=self.columns, use_threads=False).slice(row - group_offsets[group], 1)
        return table_to_samples(table)[0]

    def __getstate__(self):  # file handles do not cross process boundaries
        return {**self.__dict__, "_handles": {}}


class HubSplit(Dataset):
    """A split of a HuggingFace dataset, rows converted from Arrow (no int64 upcast)."""

    def __init__(self, repo_id: str, split: str) -> None:
        from datasets import load_dataset

        self.dataset = load_dataset(repo_id, split=split).with_format("arrow")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return finish_sample(table_to_samples(self.dataset[index : index + 1])[0])


def raw_split_dirs(root: Path, split: str) -> tuple[Path, Path] | None:
    """(images, labels) folders of a raw OpenEDS split under either Kaggle layout, or None."""
    for layout in RAW_LAYOUTS:
        base = root / layout / split if layout else root / split
        if (base / "images").is_dir() and (base / "labels").is_dir():
            return base / "images", base / "labels"
    return None


def raw_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of a raw OpenEDS split, sorted by name: the one listing that training (RawSplit) and
    scoring (iter_frames) share; the label path may not exist (a bad input for the caller to report)."""
    dirs = raw_split_dirs(root, split)
    if dirs is None:
        raise FileNotFoundError(f"{root}: no {split}/images and {split}/labels folders")
    images, labels = dirs
    return [(image_path, labels / f"{image_path.stem}.npy") for image_path in sorted(images.glob("*.png"))]


class RawSplit(Dataset):
    """Raw OpenEDS frames, preprocessed at load time. Frames whose pupil mask is empty are skipped, as precompute
    skips them (iter_frames, which scores models, keeps them: a false positive there counts); unreadable or
    malformed files raise an error naming the file."""

    def __init__(self, root: Path, split: str, columns: list[str] | None = None) -> None:
        self.maps = columns is None or "dist_map" in columns  # the label targets cost more than the rest
        self.items = [(image_path, label_path) for image_path, label_path in raw_pairs(root, split)
                      if label_path.exists() and (np.load(label_path, mmap_mode="r") == preprocess.PUPIL_CLASS).any()]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, label_path = self.items[index]
        image, label = read_raw_pair(image_path, label_path)
        sample = preprocess.preprocess_sample(image, label, maps=self.maps)
        return {**sample, "filename": image_path.name, "subject": subject_of(image_path.name)}


class BadInput(ValueError):
    """A raw file that cannot be used; the message names the file and what is wrong."""


# ------------------------------------------------------------------------------- images/ + masks/ folders
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VALIDATION_SHARE = 0.2  # of the people in a folder without --val-dataset


def is_frames_folder(path: Path) -> bool:
    """A folder of your own frames: images/ (any size) and masks/ (a PNG per image, same stem, pupil = non-zero)."""
    return (path / "images").is_dir() and (path / "masks").is_dir()


def frame_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths of an images/ + masks/ folder, sorted by name: masks/<image stem>.png (it may not exist:
    a bad input for the caller to report). The one listing that training, precompute and evaluate share."""
    names = sorted(name for name in os.listdir(root / "images") if name.lower().endswith(IMAGE_SUFFIXES))
    return [(root / "images" / name, root / "masks" / f"{Path(name).stem}.png") for name in names]


def read_frame_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A frame (grayscale uint8, any size) and its pupil mask (uint8, pupil = 1 wherever the PNG is non-zero);
    raises BadInput naming the file."""
    image = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise BadInput(f"{image_path}: not a readable image")
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) if mask_path.is_file() else None
    if mask is None:
        raise BadInput(f"{mask_path}: missing or unreadable mask for {image_path.name}")
    if mask.shape != image.shape:
        raise BadInput(f"{mask_path}: mask shape {mask.shape} does not match the image {image.shape}")
    return image, (mask > 0).astype(np.uint8)


def person_of(filename: str) -> str:
    """Whose frame: the file name's part before the first underscore (`alice_0001.png` -> `alice`); the whole stem
    when it has none (each such frame is its own person). Splits keep a person's frames on one side."""
    return Path(filename).stem.split("_")[0]


def grouped_split(names: list[str], seed: int = 0, share: float = VALIDATION_SHARE) -> dict[str, str]:
    """name -> "train" | "validation": a seeded `share` of the people (person_of) validate, at least one, and every
    frame of a person is on the same side. With one person there is no one to hold out: `share` of the frames
    (at least one) validate instead, and the caller says so."""
    people = sorted({person_of(name) for name in names})
    rng = np.random.default_rng([seed, 7])
    if len(people) >= 2:
        held = set(rng.permutation(people)[: max(1, round(share * len(people)))].tolist())
        return {name: "validation" if person_of(name) in held else "train" for name in names}
    if len(names) < 2:
        return {name: "train" for name in names}
    held = set(rng.permutation(sorted(names))[: max(1, round(share * len(names)))].tolist())
    return {name: "validation" if name in held else "train" for name in names}


class FramesSplit(Dataset):
    """Your own frames (images/ + masks/, any size) as dataset rows: gamma + CLAHE at the frame's size, letterboxed
    to the model input with its mask (preprocess.frame_sample), exactly what precompute writes for them. `split`:
    "train" or "validation" of grouped_split, or "all". Unreadable or mismatched files and frames without a pupil
    are found when the split is opened: named in a warning, counted (`bad`, `empty`) and left out."""

    def __init__(self, root: Path, split: str = "all", columns: list[str] | None = None, seed: int = 0) -> None:
        if not is_frames_folder(root):
            raise FileNotFoundError(f"{root}: expected images/ and masks/ folders")
        self.root, self.maps = root, columns is None or "dist_map" in columns
        pairs = frame_pairs(root)
        if not pairs:
            raise FileNotFoundError(f"{root / 'images'}: no images ({', '.join(IMAGE_SUFFIXES)})")
        sides = grouped_split([image.name for image, _ in pairs], seed) if split != "all" else {}
        if split != "all" and len({person_of(image.name) for image, _ in pairs}) == 1:
            log.warning("%s: every frame is of one person (file name prefix %r): validating on some of its frames, not on another person; "
                        "pass a validation folder for an honest figure", root, person_of(pairs[0][0].name))
        self.items, self.bad, self.empty = [], [], 0
        for image_path, mask_path in pairs:
            if split != "all" and sides[image_path.name] != split:
                continue
            try:
                image, mask = read_frame_pair(image_path, mask_path)
            except BadInput as error:
                log.warning("skipped bad input: %s", error)
                self.bad.append(str(error))
                continue
            if mask.any():
                self.items.append((image_path, mask_path))
            else:
                self.empty += 1

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, mask_path = self.items[index]
        image, mask = read_frame_pair(image_path, mask_path)
        return {**preprocess.frame_sample(image, mask, maps=self.maps), "filename": image_path.name, "subject": person_of(image_path.name)}


def read_raw_pair(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads and checks one raw frame and its 4-class label; raises BadInput naming the file."""
    image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BadInput(f"{image_path}: not a readable PNG image")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if image.dtype != np.uint8 or image.shape != (HEIGHT, WIDTH):
        raise BadInput(f"{image_path}: expected an 8-bit {WIDTH}x{HEIGHT} image, got {image.dtype} shape {image.shape}")
    try:
        label = np.load(label_path)
    except Exception as error:  # noqa: BLE001 - any unreadable file is bad input
        raise BadInput(f"{label_path}: not a readable .npy label ({error})") from error
    if label.shape != image.shape:
        raise BadInput(f"{label_path}: label shape {label.shape} does not match the image {image.shape}")
    if label.dtype.kind not in "iub" or label.min() < 0 or label.max() >= preprocess.NUM_OPENEDS_CLASSES:  # the full check only when needed
        unknown = np.setdiff1d(np.unique(label), np.arange(preprocess.NUM_OPENEDS_CLASSES))
    else:
        unknown = np.empty(0)
    if unknown.size:
        raise BadInput(f"{label_path}: unknown class values {unknown.tolist()} (expected 0-3)")
    return image, label.astype(np.uint8)


def subject_of(filename: str) -> str:
    """Subject id from a file name (`S012_000034.png` -> `S012`); empty when the name carries none."""
    head = Path(filename).stem.split("_")[0]
    return head if len(head) > 1 and head[0] == "S" and head[1:].isdigit() else ""


def resolve_source(spec: str) -> tuple[str, Path | str]:
    """('frames', dir) | ('parquet', dir) | ('raw', dir) | ('hub', repo_id) for a --dataset value."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if is_frames_folder(path):
            return "frames", path
        for candidate in (path / "dataset", path):
            if any(candidate.glob("*/*.parquet")):
                return "parquet", candidate
        if any(raw_split_dirs(path, split) for split in SPLIT_NAMES):
            return "raw", path
        raise FileNotFoundError(f"{path}: neither a precompute output (split folders of parquet shards), a raw OpenEDS folder ({{split}}/images, "
                                f"{{split}}/labels) nor a folder of your own frames (images/ + masks/)")
    if path.exists() or spec.startswith((".", "/")):
        raise FileNotFoundError(f"{spec}: no such dataset folder")
    return "hub", spec


# What the training split reads: the label-derived targets are computed per batch on the training device
# (training.targets), so decoding the stored float maps (3 of the 3.5 MB of a row) would be wasted work.
IMAGE_AND_LABEL = ["image", "label", *SCALAR_COLUMNS, "filename", "subject", "preprocessed"]


def describe_split(spec: str, split: str, dataset: Dataset) -> dict[str, Any]:
    """What MLflow records of a dataset input: name, digest (changes when the data does), source, source type, rows."""
    import hashlib

    kind, location = resolve_source(spec)
    digest = hashlib.sha1(f"{kind}:{split}".encode())
    rows = len(dataset)
    dataset = dataset.source if isinstance(dataset, DecodedSplit) else dataset
    if isinstance(dataset, ParquetSplit):  # shard names carry a hash of their inputs
        for path in dataset.files:
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
    elif isinstance(dataset, (RawSplit, FramesSplit)):
        for image_path, label_path in dataset.items:  # a relabelled frame keeps its .npy size: the times tell
            image, label = image_path.stat(), label_path.stat()
            digest.update(f"{image_path.name}:{image.st_size}:{image.st_mtime_ns}:{label.st_size}:{label.st_mtime_ns}".encode())
    else:
        digest.update(str(getattr(dataset.dataset, "_fingerprint", location)).encode())
    name = Path(str(location)).name if kind != "hub" else str(location)
    if name == "dataset":  # <output-dir>/dataset: the output folder names it
        name = Path(str(location)).parent.name
    return {"name": f"{name}/{split}", "digest": digest.hexdigest()[:12], "source": f"{location}/{split}" if kind != "hub" else f"hf://datasets/{location}/{split}",
            "source_type": {"parquet": "local", "raw": "local", "frames": "local", "hub": "huggingface"}[kind], "rows": rows}


def open_split(spec: str, split: str, columns: list[str] | None = None) -> Dataset:
    """A split of any source; `columns` limits what a parquet source decodes (others ignore it)."""
    kind, location = resolve_source(spec)
    if kind == "frames":
        return FramesSplit(Path(location), split, columns)
    if kind == "parquet":
        return ParquetSplit(Path(location) / split, columns)
    if kind == "raw":
        return RawSplit(Path(location), split, columns)
    return HubSplit(str(location), split)


class DecodedSplit(Dataset):
    """A split decoded once into uint8 memory maps: image and label (N, H, W) plus the ellipse columns, under
    `folder/<key>` (key: the source's identity and row count). Loader workers then copy rows out of the page cache
    instead of decoding parquet (~3 ms a row, nearly all of it rebuilding the nested lists' levels), so a few CPU
    workers keep up with a GPU. Rows are exactly the source's (training reads image, label and ellipse only).

    Built on first use (one pass over the source, written to a temporary folder and renamed: an interrupted build
    leaves nothing half-written; two processes building at once both end with the same complete copy); reused
    afterwards while the key is the same. 512 KiB of disk (and page cache) per 400x640 row."""

    FIELDS = {"image": (np.uint8, (HEIGHT, WIDTH)), "label": (np.uint8, (HEIGHT, WIDTH)), "ellipse": (np.float32, (4,)), "angle": (np.float32, ())}

    def __init__(self, source: Dataset, folder: Path, key: str, length: int | None = None) -> None:
        self.source = source  # what it was decoded from (describe_split names that)
        self.length = len(source) if length is None else min(length, len(source))
        self.path = Path(folder) / f"{key}-{self.length}"
        if not self.path.is_dir():
            self._build(source)
        self._arrays: dict[str, np.ndarray] = {}

    def _build(self, source: Dataset) -> None:
        start = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}."))
        try:
            arrays = {name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=(self.length, *shape))
                      for name, (dtype, shape) in self.FIELDS.items()}
            for index in range(self.length):
                sample = source[index]
                arrays["image"][index], arrays["label"][index] = sample["image"], sample["label"]
                arrays["ellipse"][index] = [sample[name] for name in ("cx", "cy", "rx", "ry")]
                arrays["angle"][index] = sample.get("angle", np.nan)
            for array in arrays.values():
                array.flush()
            del arrays
            os.replace(tmp, self.path)
        except OSError:
            if not self.path.is_dir():  # another process finished first: its copy is the same
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("decoded %d rows into %s in %.1f s", self.length, self.path, time.perf_counter() - start)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not self._arrays:  # mapped lazily, so each DataLoader worker maps its own
            self._arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r") for name in self.FIELDS}
        ellipse = self._arrays["ellipse"][index]
        return {"image": np.array(self._arrays["image"][index]), "label": np.array(self._arrays["label"][index]),
                **dict(zip(("cx", "cy", "rx", "ry"), ellipse.tolist())), "angle": float(self._arrays["angle"][index]), "preprocessed": True}

    def __getstate__(self):  # memory maps do not cross process boundaries
        return {**self.__dict__, "_arrays": {}}


class TrainingDataset(Dataset):
    """Wraps a split for a DataLoader: decoded samples as tensors in compact dtypes (image/label uint8) plus their
    `index`. No augmentation here: `training.augment` applies it per batch on the training device, seeded by
    (seed, epoch, index), and `training.targets` derives the label targets there when a sample carries none."""

    def __init__(self, source: Dataset, limit: int = 0) -> None:
        self.source = source
        self.length = min(len(source), limit) if limit else len(source)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return {**to_tensors(self.source[index]), "index": torch.tensor(index)}


def _tensor(array: np.ndarray) -> torch.Tensor:
    """Zero-copy where possible; arrays read from Arrow are read-only and get copied once."""
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))


def to_tensors(sample: dict[str, Any]) -> dict[str, torch.Tensor]:
    """image (1, H, W) uint8, label (H, W) uint8, ellipse (4,) normalized cx, cy, rx, ry, angle () degrees, and the
    stored label targets (spatial_weights (H, W), dist_map (2, H, W) float32) when the sample has them."""
    ellipse = np.array([sample[name] for name in ("cx", "cy", "rx", "ry")], np.float32)
    out = {
        "image": _tensor(sample["image"])[None],
        "label": _tensor(sample["label"]),
        "ellipse": torch.from_numpy(ellipse),
        "angle": torch.tensor(np.float32(sample.get("angle", np.nan))),
    }
    out.update({name: _tensor(sample[name]) for name in ("spatial_weights", "dist_map") if name in sample})
    return out


# ------------------------------------------------------------------------------------- frames to score
@dataclass
class Frame:
    name: str
    image: np.ndarray  # uint8 (H, W), raw unless preprocessed
    mask: np.ndarray  # uint8 (H, W), pupil = 1
    preprocessed: bool


def iter_frames(source: str | os.PathLike, split: str = "validation", limit: int = 0, bad: list[str] | None = None) -> Iterator[Frame]:
    """Frames with pupil masks from a precompute output, a raw OpenEDS folder or an images/ + masks/ folder.

    A frame that cannot be used (unreadable image, missing or mis-sized mask) raises BadInput naming the file,
    unless `bad` is a list: then its message is logged, appended there and the frame left out."""
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such data folder")
    count = 0
    for frame in _frames(root, split):
        if isinstance(frame, BadInput):
            if bad is None:
                raise frame
            log.warning("skipped bad input: %s", frame)
            bad.append(str(frame))
            continue
        if limit and count >= limit:
            return
        count += 1
        yield frame


def _read_pair(image_path: Path, mask_path: Path) -> Frame | BadInput:
    try:
        image, mask = read_frame_pair(image_path, mask_path)
    except BadInput as error:
        return error
    return Frame(image_path.name, image, mask, False)


def _frames(root: Path, split: str) -> Iterator[Frame | BadInput]:
    if is_frames_folder(root):
        for image_path, mask_path in frame_pairs(root):
            yield _read_pair(image_path, mask_path)
        return
    kind, location = resolve_source(str(root))
    if kind == "parquet":  # precompute never writes empty-pupil frames
        dataset = ParquetSplit(Path(location) / split, columns=["image", "label", "filename", "preprocessed"])
        for index in range(len(dataset)):
            row = dataset.read_row(index)
            yield Frame(row["filename"], row["image"], row["label"], bool(row["preprocessed"]))
    elif kind == "raw":
        for image_path, label_path in raw_pairs(Path(location), split):
            try:
                image, label = read_raw_pair(image_path, label_path)
            except BadInput as error:
                yield error
                continue
            yield Frame(image_path.name, image, preprocess.binarize(label), False)
    else:
        raise FileNotFoundError(f"{root}: evaluate reads local folders (precompute output, raw OpenEDS, images/ + masks/)")
