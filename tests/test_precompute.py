"""precompute.py on synthetic raw data: schema, validation, bad input, credentials, re-runs and the hub push."""

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, run_python
from training import precompute
from training.synthetic import generate


def test_dataset_has_the_published_schema(precomputed):
    """Scenario: Precompute writes the published schema"""
    from datasets import load_dataset

    dataset = load_dataset(str(precomputed / "dataset"))
    assert set(dataset) == {"train", "validation", "test"}
    features = dataset["train"].features
    assert features["image"].shape == (400, 640) and features["image"].dtype == "uint8"
    assert features["label"].dtype == "uint8" and features["spatial_weights"].dtype == "float32"
    assert features["dist_map"].shape == (2, 400, 640) and features["dist_map"].dtype == "float32"
    for name in ("cx", "cy", "rx", "ry"):
        assert features[name].dtype == "float32"
    assert features["filename"].dtype == "string" and features["preprocessed"].dtype == "bool"
    row = dataset["validation"].with_format("numpy", dtype=None)[0]
    assert row["preprocessed"] and set(np.unique(row["label"])) <= {0, 1}
    assert 0 < row["cx"] < 1 and 0 < row["rx"] < 1
    assert (precomputed / "dataset" / "README.md").read_text().startswith("---\n")


def test_empty_masks_are_skipped_and_counted(precomputed, raw_dir):
    """Scenario: Empty masks are skipped"""
    total_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (precomputed / "dataset").rglob("*.parquet"))
    empty = [p for p in raw_dir.rglob("labels/*.npy") if not (np.load(p) == 3).any()]
    assert len(empty) == 1
    assert total_rows == 48 - len(empty)
    names = set()
    for path in (precomputed / "dataset").rglob("*.parquet"):
        names |= set(pq.read_table(path, columns=["filename"]).column("filename").to_pylist())
    assert not names & {p.stem + ".png" for p in empty}


def test_validate_passes_on_a_fresh_dataset_and_fails_on_a_tampered_one(precomputed, tmp_path):
    """Scenario: Validate recomputes and compares"""
    assert precompute.main(["--validate", "--skip-download", "--no-push", "--output-dir", str(precomputed)]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(precomputed, copy)
    shard = sorted((copy / "dataset" / "validation").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    cx = table.column("cx").to_numpy().copy()
    cx[:] += 0.01
    import pyarrow as pa

    table = table.set_column(table.schema.get_field_index("cx"), table.schema.field("cx"), pa.array(cx, pa.float32()))
    pq.write_table(table, shard, row_group_size=1)
    assert precompute.main(["--validate", "--skip-download", "--no-push", "--output-dir", str(copy)]) == precompute.EXIT_MISMATCH


def _corrupt(raw):
    images, labels = raw / "train" / "images", raw / "train" / "labels"
    names = sorted(p.stem for p in images.glob("*.png"))
    (images / f"{names[0]}.png").write_bytes(b"not a png at all")
    np.save(labels / f"{names[1]}.npy", np.zeros((10, 10), np.uint8))
    bad_values = np.load(labels / f"{names[2]}.npy")
    bad_values[0, 0] = 7
    np.save(labels / f"{names[2]}.npy", bad_values)
    return names[:3]


def test_keep_empty_writes_the_frames_without_a_pupil_of_the_named_splits(tmp_path, capsys):
    """Scenario: Frames without a pupil kept for training"""
    generate(tmp_path, 20, seed=2, workers=1, closed_share=0.4)  # closed eyes in train
    label = next((tmp_path / "validation" / "labels").glob("*.npy"))
    np.save(label, np.zeros_like(np.load(label)))  # and one in validation
    empty = {split: sum(not (np.load(p) == 3).any() for p in (tmp_path / split / "labels").glob("*.npy")) for split in ("train", "validation", "test")}
    assert empty["train"] > 0 and empty["validation"] > 0
    args = ["--skip-download", "--no-push", "--output-dir", str(tmp_path), "--workers", "1"]
    assert precompute.main(args) == 0  # the default: skipped everywhere
    assert _row_counts(tmp_path / "dataset")["train"] == 14 - empty["train"]
    capsys.readouterr()
    assert precompute.main([*args, "--keep-empty", "train"]) == 0
    assert f"train 14 written, {empty['train']} empty kept" in capsys.readouterr().out
    counts = _row_counts(tmp_path / "dataset")  # the skipped run's train shards are not reused: other names
    assert counts == {"train": 14, "validation": 3 - empty["validation"], "test": 3 - empty["test"]}
    labels = [pq.read_table(p, columns=["label"]).column("label").to_pylist() for p in (tmp_path / "dataset" / "train").glob("*.parquet")]
    assert sum(not np.asarray(label).any() for shard in labels for label in shard) == empty["train"]  # all-zero labels
    assert f"| train | 14 | {empty['train']} kept | 0 |" in (tmp_path / "dataset" / "README.md").read_text()
    assert precompute.validate(tmp_path, per_split=20) == []  # every row, the kept ones too, recomputes to itself
    with pytest.raises(ValueError, match="unknown splits"):
        precompute.build_dataset(tmp_path, workers=1, keep_empty=["training"])


def test_bad_inputs_are_warned_counted_and_left_out(tmp_path, caplog, capsys):
    """Scenario: Bad input files"""
    generate(tmp_path, 10, seed=2)
    bad = _corrupt(tmp_path)
    with caplog.at_level("WARNING"):
        assert precompute.main(["--skip-download", "--no-push", "--output-dir", str(tmp_path), "--workers", "1"]) == 0
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert f"{bad[0]}.png: not a readable PNG" in warnings
    assert f"{bad[1]}.npy: label shape (10, 10)" in warnings
    assert f"{bad[2]}.npy: unknown class values [7]" in warnings
    assert "3 bad inputs skipped" in capsys.readouterr().out
    written = set()
    for path in (tmp_path / "dataset").rglob("*.parquet"):
        written |= set(pq.read_table(path, columns=["filename"]).column("filename").to_pylist())
    assert not written & {f"{name}.png" for name in bad}
    assert written


def test_strict_makes_bad_input_fatal(tmp_path, capsys):
    """Scenario: Bad input files"""
    generate(tmp_path, 10, seed=2)
    bad = _corrupt(tmp_path)
    code = precompute.main(["--skip-download", "--no-push", "--output-dir", str(tmp_path), "--strict", "--workers", "1"])
    assert code == precompute.EXIT_BAD_INPUT
    assert bad[0] in capsys.readouterr().err


def test_strict_after_a_lenient_run_is_still_fatal(tmp_path, capsys):
    """Scenario: Bad input files"""
    generate(tmp_path, 10, seed=2)
    bad = _corrupt(tmp_path)
    assert precompute.main(["--skip-download", "--no-push", "--output-dir", str(tmp_path), "--workers", "1"]) == 0
    capsys.readouterr()
    code = precompute.main(["--skip-download", "--no-push", "--output-dir", str(tmp_path), "--strict", "--workers", "1"])
    assert code == precompute.EXIT_BAD_INPUT  # the reused shard recorded the bad input: strict makes it fatal
    assert bad[0] in capsys.readouterr().err


@pytest.mark.parametrize("given", [{}, {"KAGGLE_USERNAME": "", "KAGGLE_KEY": ""}, {"KAGGLE_USERNAME": "", "KAGGLE_KEY": "", "KAGGLE_API_TOKEN": ""},
                                   {"KAGGLE_USERNAME": "someone"}, {"KAGGLE_USERNAME": "someone", "KAGGLE_KEY": ""}, {"KAGGLE_KEY": "0123abcd"}],
                         ids=["unset", "empty", "all-empty", "username-only", "empty-key", "key-only"])
def test_missing_kaggle_credentials_give_one_clear_message(tmp_path, given):
    """Scenario: Missing Kaggle credentials

    Unset, empty (what a CI secret without a value leaves) or half-given credentials stop before the kaggle client
    runs (the installed one would try an anonymous download and fail on the network): one line, exit 2."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(HOME=str(tmp_path), KAGGLE_CONFIG_DIR=str(tmp_path / ".kaggle"), **given)
    result = subprocess.run([sys.executable, "precompute.py", "--no-push", "--output-dir", str(tmp_path / "out")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Kaggle credentials not found" in lines[0] and "KAGGLE_USERNAME" in lines[0], lines
    assert "Traceback" not in result.stderr + result.stdout
    if given.get("KAGGLE_USERNAME") or given.get("KAGGLE_KEY"):
        assert ("KAGGLE_KEY is" if given.get("KAGGLE_USERNAME") else "KAGGLE_USERNAME is") in lines[0]  # names what is missing


def test_credentials_in_kaggle_json_count_and_empty_variables_do_not_hide_them(tmp_path):
    """Scenario: Missing Kaggle credentials"""
    from training.precompute import kaggle_credentials_problem

    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    assert kaggle_credentials_problem({}, home) is not None
    (home / ".kaggle" / "kaggle.json").write_text('{"username": "someone", "key": ""}')
    assert kaggle_credentials_problem({"KAGGLE_USERNAME": "", "KAGGLE_KEY": ""}, home) is not None  # a key is needed
    (home / ".kaggle" / "kaggle.json").write_text('{"username": "someone", "key": "0123abcd"}')
    assert kaggle_credentials_problem({"KAGGLE_USERNAME": "", "KAGGLE_KEY": ""}, home) is None
    assert kaggle_credentials_problem({"KAGGLE_API_TOKEN": "tok"}, tmp_path / "nobody") is None
    assert kaggle_credentials_problem({"KAGGLE_USERNAME": "a", "KAGGLE_KEY": "b"}, tmp_path / "nobody") is None


def test_rerun_reuses_finished_shards_and_rebuilds_changed_ones(tmp_path, capsys):
    """Scenario: Re-running is safe and resumable"""
    generate(tmp_path, 12, seed=4)
    args = ["--skip-download", "--no-push", "--output-dir", str(tmp_path), "--shard-size", "4", "--workers", "1"]
    assert precompute.main(args) == 0
    shards = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "dataset").rglob("*.parquet")}
    assert precompute.main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "dataset").rglob("*.parquet")} == shards  # nothing redone
    # change one raw frame: only its shard is rebuilt, the old version is removed
    image = sorted((tmp_path / "train" / "images").glob("*.png"))[0]
    other = sorted((tmp_path / "train" / "images").glob("*.png"))[-1]
    image.write_bytes(other.read_bytes())
    assert precompute.main(args) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "dataset").rglob("*.parquet")}
    assert len(after) == len(shards)
    assert len(set(after) - set(shards)) == 1
    assert not list((tmp_path / "dataset").rglob(".*.tmp"))


class FakeHfApi:
    """In-memory stand-in for huggingface_hub.HfApi: records uploads; can fail the first N calls of a file."""

    def __init__(self, fail_on: dict | None = None):
        self.files, self.calls, self.fail_on = {}, [], dict(fail_on or {})

    def create_repo(self, repo_id, repo_type, exist_ok):
        assert repo_type == "dataset" and exist_ok

    def list_repo_files(self, repo_id, repo_type):
        return list(self.files)

    def upload_file(self, path_or_fileobj, path_in_repo, repo_id, repo_type, commit_message):
        self.calls.append(path_in_repo)
        if self.fail_on.get(path_in_repo, 0) > 0:
            self.fail_on[path_in_repo] -= 1
            raise ConnectionError("connection reset")
        self.files[path_in_repo] = open(path_or_fileobj, "rb").read()

    def delete_file(self, path_in_repo, repo_id, repo_type, commit_message):
        self.calls.append(f"delete {path_in_repo}")
        del self.files[path_in_repo]


def test_push_retries_keeps_local_shards_and_uploads_only_what_is_missing(precomputed):
    """Scenario: Push to the hub with retries"""
    dataset = precomputed / "dataset"
    local = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file())
    sleeps = []
    flaky = FakeHfApi(fail_on={local[0]: 2})
    uploaded = precompute.push_to_hub(dataset, "me/eyes", api=flaky, retries=3, backoff=1.0, sleep=sleeps.append)
    assert sorted(uploaded) == local and sleeps == [1.0, 2.0]
    assert uploaded[-1] == "README.md"  # the card goes last
    # a push that dies on one file keeps everything local; the next run sends only what is missing
    broken = FakeHfApi(fail_on={local[1]: 99})
    with pytest.raises(RuntimeError, match="failed after 2 attempts"):
        precompute.push_to_hub(dataset, "me/eyes", api=broken, retries=2, sleep=lambda s: None)
    assert all((dataset / rel).exists() for rel in local)
    sent_before = set(broken.files)
    broken.fail_on.clear()
    broken.calls.clear()
    again = precompute.push_to_hub(dataset, "me/eyes", api=broken, retries=2, sleep=lambda s: None)
    assert set(again) == set(local) - sent_before and set(broken.calls) == set(again)
    assert {k: v for k, v in broken.files.items()} == {rel: (dataset / rel).read_bytes() for rel in local}


def _load_counts(dataset: Path, cache: Path) -> dict[str, int]:
    from datasets import load_dataset

    return {split: len(rows) for split, rows in load_dataset(str(dataset), cache_dir=str(cache)).items()}


def _row_counts(dataset: Path) -> dict[str, int]:
    return {split.name: sum(pq.ParquetFile(f).metadata.num_rows for f in split.glob("*.parquet")) for split in dataset.iterdir() if split.is_dir()}


@pytest.mark.slow
def test_load_dataset_reads_what_is_on_disk_not_another_outputs_cache(tmp_path):
    """Scenario: The card keys the datasets cache by content

    Two precompute outputs, both folders named `dataset` (the cache key `datasets` derives from the card alone was
    the same), then a re-run of the first that adds frames: each load returns that folder's rows."""
    cache = tmp_path / "hf-cache"
    outputs = {}
    for name, frames in (("small", 12), ("large", 30)):
        generate(tmp_path / name, frames, seed=5, workers=1)
        assert precompute.main(["--skip-download", "--no-push", "--output-dir", str(tmp_path / name), "--workers", "1"]) == 0
        outputs[name] = tmp_path / name / "dataset"
    small = _load_counts(outputs["small"], cache)
    assert small == _row_counts(outputs["small"])
    assert _load_counts(outputs["large"], cache) == _row_counts(outputs["large"]) != small
    generate(tmp_path / "small", 30, seed=5, workers=1)  # the same folder, more frames: precompute again
    assert precompute.main(["--skip-download", "--no-push", "--output-dir", str(tmp_path / "small"), "--workers", "1"]) == 0
    assert _load_counts(outputs["small"], cache) == _row_counts(outputs["small"]) != small
    card = (outputs["small"] / "README.md").read_text()
    assert f'content {precompute.content_fingerprint(outputs["small"])}' in card


@pytest.mark.slow
def test_a_repush_after_a_rerun_leaves_the_repo_equal_to_the_local_dataset(tmp_path):
    """Scenario: Push to the hub with retries"""
    generate(tmp_path, 12, seed=6, workers=1)
    args = ["--skip-download", "--no-push", "--output-dir", str(tmp_path), "--workers", "1", "--shard-size", "4"]
    assert precompute.main(args) == 0
    dataset = tmp_path / "dataset"
    hub = FakeHfApi()
    precompute.push_to_hub(dataset, "me/eyes", api=hub, sleep=lambda s: None)
    before = dict(hub.files)
    generate(tmp_path, 20, seed=6, workers=1)  # more frames: some shards change names, the card's fingerprint moves
    assert precompute.main(args) == 0
    hub.calls.clear()
    precompute.push_to_hub(dataset, "me/eyes", api=hub, sleep=lambda s: None)
    local = {p.relative_to(dataset).as_posix(): p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    assert hub.files == local and hub.files["README.md"] != before["README.md"]
    assert any(call.startswith("delete ") for call in hub.calls) and hub.calls[-1] == "README.md"


def test_cli_end_to_end_from_the_readme(tmp_path):
    """Scenario: Precompute writes the published schema"""
    result = run_python(["-m", "training.synthetic", "--output-dir", str(tmp_path), "--num-images", "12", "--seed", "3"])
    assert result.returncode == 0, result.stderr
    result = run_python(["precompute.py", "--skip-download", "--no-push", "--output-dir", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "precompute:" in result.stdout and "img/s" in result.stdout
    result = run_python(["precompute.py", "--validate", "--skip-download", "--no-push", "--output-dir", str(tmp_path)])
    assert result.returncode == 0 and "validate: OK" in result.stdout
