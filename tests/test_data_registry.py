"""The dataset registry: lookup order, verification and the errors on bad data files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flatcast.data import (
    DATASETS,
    DataError,
    DataFileMissingError,
    DatasetInfo,
    dataset_info,
    dataset_path,
    load_dataset,
    make_splits,
    verify_file,
)
from flatcast.data import registry

NINE = {"ETTh1", "ETTh2", "ETTm1", "ETTm2", "electricity", "exchange_rate", "traffic", "weather",
        "national_illness"}


def _write_tiny_csv(path: Path, n_rows: int = 30, n_channels: int = 3) -> bytes:
    dates = pd.date_range("2020-01-01", periods=n_rows, freq="h")
    values = np.arange(n_rows * n_channels, dtype=float).reshape(n_rows, n_channels) / 4
    frame = pd.DataFrame(values, columns=[f"c{i}" for i in range(n_channels - 1)] + ["OT"])
    frame.insert(0, "date", dates.strftime("%Y-%m-%d %H:%M:%S"))
    frame.to_csv(path, index=False)
    return path.read_bytes()


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A registered 30 x 3 synthetic dataset 'tiny' with a known checksum, in tmp_path; no download possible."""
    content = _write_tiny_csv(tmp_path / "tiny.csv")
    info = DatasetInfo("tiny", "tiny.csv", rows=30, n_channels=3, freq="h", split="ratio", home="the test",
                       sha256=hashlib.sha256(content).hexdigest(), n_bytes=len(content),
                       url="https://example.invalid/tiny.csv")
    monkeypatch.setitem(DATASETS, "tiny", info)

    def no_network(url, destination):
        raise OSError(f"no network in tests ({url})")

    monkeypatch.setattr(registry, "_download", no_network)
    return tmp_path / "tiny.csv"


def test_registry_knows_the_nine_datasets_with_their_shapes():
    assert NINE <= set(DATASETS)
    assert (dataset_info("electricity").rows, dataset_info("electricity").n_channels) == (26304, 321)
    assert (dataset_info("traffic").rows, dataset_info("traffic").n_channels) == (17544, 862)
    assert dataset_info("electricity").sha256 is None and dataset_info("traffic").sha256 is None
    assert dataset_info("ETTm2").url.endswith("/ETT-small/ETTm2.csv")
    assert dataset_info("ETTh1").freq == "h" and dataset_info("ETTm1").freq == "15min"


def test_registry_agrees_with_the_shared_manifest(benchmark_data_dir):
    manifest = pd.read_csv(benchmark_data_dir / "MANIFEST.csv")
    assert len(manifest) == 7
    for row in manifest.itertuples():
        info = next(i for i in DATASETS.values() if i.file == row.file)
        assert (info.rows, info.n_channels, info.sha256, info.n_bytes) == (
            row.rows, row.variables, row.sha256, row.bytes)


def test_unknown_dataset_name_raises_key_error_listing_the_known_ones():
    with pytest.raises(KeyError, match="ETTh3.*ETTh1"):
        dataset_info("ETTh3")
    with pytest.raises(KeyError, match="known datasets"):
        load_dataset("ettH1")
    with pytest.raises(KeyError, match="'nope'"):
        make_splits("nope", 96, 96)


def test_load_real_ett_file(benchmark_data_dir):
    frame = load_dataset("ETTh1", data_dir=benchmark_data_dir)
    assert frame.shape == (17420, 7)
    assert list(frame.columns) == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.name == "date"
    assert frame.index[0] == pd.Timestamp("2016-07-01 00:00") and frame.index[-1] == pd.Timestamp("2018-06-26 19:00")
    assert frame.iloc[0, 0] == 5.827000141143799 and frame.iloc[0, -1] == 30.5310001373291


def test_lookup_prefers_the_environment_directory_then_data_raw(tiny, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "tiny.csv").write_bytes(tiny.read_bytes())
    monkeypatch.setattr(registry, "RAW_DATA_DIR", raw)
    monkeypatch.setenv("FLATCAST_DATA", str(tmp_path))
    assert dataset_path("tiny") == tmp_path / "tiny.csv"
    monkeypatch.setenv("FLATCAST_DATA", str(tmp_path / "does-not-exist"))
    assert dataset_path("tiny") == raw / "tiny.csv"
    monkeypatch.delenv("FLATCAST_DATA")
    assert dataset_path("tiny") == raw / "tiny.csv"


def test_missing_file_without_download_says_what_was_tried_and_where_to_put_it(tiny, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFileMissingError) as caught:
        load_dataset("tiny", data_dir=empty)
    message = str(caught.value)
    assert "tiny.csv" in message and str(empty / "tiny.csv") in message
    assert "https://example.invalid/tiny.csv" in message and "no network in tests" in message
    assert "put it at" in message
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, DataError)


def test_missing_file_with_no_public_url_points_to_the_tsl_bundle(tmp_path, monkeypatch):
    def must_not_download(url, destination):
        raise AssertionError("electricity has no download URL")

    monkeypatch.setattr(registry, "_download", must_not_download)
    monkeypatch.setattr(registry, "RAW_DATA_DIR", tmp_path)
    monkeypatch.delenv("FLATCAST_DATA", raising=False)
    with pytest.raises(DataFileMissingError, match=r"electricity\.csv.*Time-Series-Library.*FLATCAST_DATA"):
        load_dataset("electricity")


def test_download_goes_to_the_target_directory_and_is_verified(tiny, tmp_path, monkeypatch):
    good = tiny.read_bytes()
    target = tmp_path / "target"
    monkeypatch.setattr(registry, "_download", lambda url, dest: dest.write_bytes(good))
    target.mkdir()
    assert load_dataset("tiny", data_dir=target).shape == (30, 2 + 1)
    assert (target / "tiny.csv").read_bytes() == good

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    monkeypatch.setattr(registry, "_download", lambda url, dest: dest.write_bytes(good.replace(b"0.25", b"0.75")))
    with pytest.raises(DataError, match="downloaded from https://example.invalid/tiny.csv was rejected"):
        load_dataset("tiny", data_dir=corrupt)
    assert not (corrupt / "tiny.csv").exists()


def test_wrong_checksum_is_reported_with_both_digests(tiny):
    content = tiny.read_bytes()
    tampered = content.replace(b"0.25", b"0.75", 1)
    assert len(tampered) == len(content) and tampered != content
    tiny.write_bytes(tampered)
    with pytest.raises(DataError, match=r"tiny\.csv fails its checksum") as caught:
        load_dataset("tiny", data_dir=tiny.parent)
    assert hashlib.sha256(tampered).hexdigest() in str(caught.value)
    assert DATASETS["tiny"].sha256 in str(caught.value)


def test_truncated_file_is_reported_as_truncated(tiny):
    content = tiny.read_bytes()
    tiny.write_bytes(content[: len(content) - 10])
    with pytest.raises(DataError, match=rf"tiny\.csv is truncated: {len(content) - 10} bytes, expected {len(content)}"):
        load_dataset("tiny", data_dir=tiny.parent)


def test_truncated_file_without_known_checksum_is_caught_by_parsing(tiny, monkeypatch):
    monkeypatch.setitem(DATASETS, "tiny", DatasetInfo("tiny", "tiny.csv", 30, 3, "h", "ratio", "the test"))
    content = tiny.read_bytes()
    tiny.write_bytes(content[: len(content) - 6])  # cuts the last line in the middle: a field goes missing
    with pytest.raises(DataError, match=r"malformed \(or truncated\).*data row 29"):
        load_dataset("tiny", data_dir=tiny.parent)
    tiny.write_bytes(content[: content.rstrip(b"\n").rfind(b"\n") + 1])  # a whole line gone
    with pytest.raises(DataError, match="wrong shape: 29 rows x 3 channels, expected 30 x 3"):
        load_dataset("tiny", data_dir=tiny.parent)


def test_malformed_csv_names_the_bad_cell(tiny):
    lines = tiny.read_text().splitlines()
    fields = lines[5].split(",")
    fields[2] = "abc"
    lines[5] = ",".join(fields)
    tiny.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"malformed.*data row 4 column 'c1' \('abc'\)"):
        load_dataset("tiny", data_dir=tiny.parent, verify=False)
    tiny.write_text("when," + "\n".join(lines)[5:] + "\n")
    with pytest.raises(DataError, match="first column must be 'date'"):
        load_dataset("tiny", data_dir=tiny.parent, verify=False)


def test_unparseable_date_and_infinite_values_are_rejected(tiny):
    text = tiny.read_text()
    tiny.write_text(text.replace("2020-01-01 03:00:00", "yesterday"))
    with pytest.raises(DataError, match="date 'yesterday' at data row 3"):
        load_dataset("tiny", data_dir=tiny.parent, verify=False)
    lines = text.splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",inf"
    tiny.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="not finite"):
        load_dataset("tiny", data_dir=tiny.parent, verify=False)


def test_wrong_shape_is_reported(tiny, monkeypatch):
    info = DATASETS["tiny"]
    monkeypatch.setitem(DATASETS, "tiny", DatasetInfo(**{**info.__dict__, "n_channels": 4}))
    with pytest.raises(DataError, match=r"wrong shape: 30 rows x 3 channels, expected 30 x 4 for dataset 'tiny'"):
        load_dataset("tiny", data_dir=tiny.parent)


def test_checksum_is_cached_per_path_mtime_and_size(tiny, monkeypatch):
    calls = []
    real_sha256 = hashlib.sha256

    def counting_sha256(*args):
        calls.append(1)
        return real_sha256(*args)

    monkeypatch.setattr(registry.hashlib, "sha256", counting_sha256)
    info = DATASETS["tiny"]
    verify_file(tiny, info)
    verify_file(tiny, info)
    assert len(calls) == 1
    content = tiny.read_bytes()
    tiny.write_bytes(content.replace(b"0.25", b"0.75", 1))  # same size, new content
    stat = tiny.stat()
    os.utime(tiny, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="checksum"):
        verify_file(tiny, info)
    assert len(calls) == 2


def test_loaded_frame_is_a_copy(tiny):
    first = load_dataset("tiny", data_dir=tiny.parent)
    first.iloc[0, 0] = -999.0
    assert load_dataset("tiny", data_dir=tiny.parent).iloc[0, 0] == 0.0


def test_relative_environment_path_is_taken_from_cwd_then_from_the_repository_root(tiny, tmp_path, monkeypatch):
    (tmp_path / "cwd" / "rel").mkdir(parents=True)
    (tmp_path / "repo" / "rel").mkdir(parents=True)
    (tmp_path / "repo" / "rel" / "tiny.csv").write_bytes(tiny.read_bytes())
    monkeypatch.setattr(registry, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("FLATCAST_DATA", "rel")
    monkeypatch.chdir(tmp_path / "cwd")  # ./rel exists but holds no file; a directory that exists wins
    with pytest.raises(DataFileMissingError, match="rel/tiny.csv"):
        dataset_path("tiny", download=False)
    (tmp_path / "cwd" / "rel").rmdir()
    assert dataset_path("tiny", download=False) == tmp_path / "repo" / "rel" / "tiny.csv"


def test_stage_datasets_copies_checked_files_and_refuses_corrupt_ones(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("FLATCAST_DATA", str(tiny.parent))
    staged = tmp_path / "staged"
    assert registry.stage_datasets(staged, ["tiny"]) == {"tiny": "copied"}
    assert (staged / "tiny.csv").read_bytes() == tiny.read_bytes()
    assert registry.stage_datasets(staged, ["tiny"]) == {"tiny": "kept"}
    (staged / "tiny.csv").write_text("damaged")  # a damaged staged copy is replaced from the source
    assert registry.stage_datasets(staged, ["tiny"]) == {"tiny": "copied"}
    tiny.write_text(tiny.read_text().replace("0.25", "9.25", 1))  # a corrupt source is never copied
    (staged / "tiny.csv").unlink()
    with pytest.raises(DataError):
        registry.stage_datasets(staged, ["tiny"])
    assert not (staged / "tiny.csv").exists()
    monkeypatch.setenv("FLATCAST_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(registry, "RAW_DATA_DIR", tmp_path / "nowhere")
    assert registry.stage_datasets(staged, ["tiny"])["tiny"].startswith("missing: ")
