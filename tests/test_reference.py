"""The papers' reference tables in data/reference/ and their loader."""

from __future__ import annotations

import re
import shutil

import pytest

from flatcast.reference import list_reference_tables, load_reference, reference_dir

DATASET_NAMES = {"ETTh1", "ETTh2", "ETTm1", "ETTm2", "Electricity", "Exchange", "Traffic", "Weather", "ILI",
                 "PEMS03", "PEMS04", "PEMS07", "PEMS08", "all"}
VISION_TABLES = {"eeo_table2_binary_seg", "eeo_table3_synapse"}  # segmentation data sets, not forecasting
PAPER_OF_PREFIX = {"samformer": "SAMformer", "eeo": "EEO-TFV", "oce": "OCE-TS"}


def _readme_row_counts() -> dict[str, int]:
    """Rows per file as stated in the last column of the README's file tables."""
    counts = {}
    for line in (reference_dir() / "README.md").read_text().splitlines():
        match = re.match(r"\|\s*`(\w+)\.csv`\s*\|.*\|\s*(\d+)\s*\|\s*$", line)
        if match:
            counts[match.group(1)] = int(match.group(2))
    return counts


def test_every_table_loads_with_the_row_count_the_readme_states():
    names = list_reference_tables()
    counts = _readme_row_counts()
    assert len(names) == 23 and "hyperparameters" in names
    assert set(counts) == set(names) - {"hyperparameters"}
    for name in names:
        frame = load_reference(name)
        assert len(frame) == counts.get(name, 67), name  # the README gives hyperparameters.csv as 67 rows


def test_every_table_follows_the_readme_conventions():
    for name in list_reference_tables():
        frame = load_reference(name)
        paper = PAPER_OF_PREFIX.get(name.split("_")[0])
        if paper is not None:
            assert set(frame["paper"]) == {paper}, name
            assert frame["table"].str.fullmatch(r"Table \d+").all(), name
        else:
            assert set(frame["paper"]) <= set(PAPER_OF_PREFIX.values())
        forecasting = name not in VISION_TABLES
        if "dataset" in frame.columns and forecasting:
            assert set(frame["dataset"]) <= DATASET_NAMES, (name, set(frame["dataset"]) - DATASET_NAMES)
        if "horizon" in frame.columns:
            assert all(h == "avg" or (isinstance(h, int) and h > 0) for h in frame["horizon"]), name


def test_samformer_table1_content():
    frame = load_reference("samformer_table1_mse")
    assert len(frame) == 296
    assert list(frame.columns) == ["paper", "table", "dataset", "horizon", "model", "model_label", "training",
                                   "source", "year", "metric", "value", "std", "emphasis", "note"]
    row = frame[(frame.dataset == "ETTh1") & (frame.horizon == 96) & (frame.model == "SAMformer")]
    assert row["value"].tolist() == [0.381] and row["std"].tolist() == [0.003]
    assert frame["value"].dtype.kind == "f"
    assert load_reference("samformer_table1_mse.csv").equals(frame)


def test_unknown_table_raises_key_error_listing_the_known_ones():
    with pytest.raises(KeyError, match="'samformer_table99'.*samformer_table1_mse"):
        load_reference("samformer_table99")
    with pytest.raises(TypeError, match="must be a string"):
        load_reference(1)


def test_environment_override_of_the_directory(tmp_path, monkeypatch):
    shutil.copy(reference_dir() / "oce_table3_runtime.csv", tmp_path / "only_one.csv")
    monkeypatch.setenv("FLATCAST_REFERENCE", str(tmp_path))
    assert list_reference_tables() == ["only_one"]
    assert len(load_reference("only_one")) == 6
    monkeypatch.setenv("FLATCAST_REFERENCE", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="absent"):
        list_reference_tables()
