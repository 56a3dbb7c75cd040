"""Time-Series-Library window splits, the train-only scaler, WindowSet views, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from flatcast.data import (
    DATASETS,
    DatasetInfo,
    WindowSet,
    dataset_info,
    load_dataset,
    mae,
    make_splits,
    mse,
    split_borders,
)


@pytest.fixture(scope="module")
def etth1(benchmark_data_dir):
    return make_splits("ETTh1", 512, 96, data_dir=benchmark_data_dir), load_dataset("ETTh1", data_dir=benchmark_data_dir)


def test_etth1_window_counts_match_time_series_library(etth1):
    splits, _ = etth1
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8033, 2785, 2785)
    assert splits.borders == {"train": (0, 8640), "val": (8128, 11520), "test": (11008, 14400)}
    assert splits.train.x.shape == (8033, 7, 512) and splits.train.y.shape == (8033, 7, 96)
    assert splits.train.x.dtype == torch.float32
    assert (splits.name, splits.lookback, splits.horizon, splits.n_channels) == ("ETTh1", 512, 96, 7)


def test_a_window_equals_the_hand_sliced_standardised_series(etth1):
    splits, frame = etth1
    raw = frame.to_numpy()
    mean, std = raw[:8640].mean(axis=0), raw[:8640].std(axis=0)
    standardised = (raw - mean) / std
    np.testing.assert_allclose(splits.mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(splits.std.numpy(), std, rtol=1e-6)
    i = 1234  # val window i covers rows 8128+i .. 8128+i+512+96
    start = 8128 + i
    np.testing.assert_allclose(splits.val.x[i].numpy(), standardised[start:start + 512].T, atol=1e-5)
    np.testing.assert_allclose(splits.val.y[i].numpy(), standardised[start + 512:start + 608].T, atol=1e-5)


def test_scaler_uses_the_train_part_only(etth1):
    splits, _ = etth1
    train_series = splits.train.series.double()
    assert train_series.shape == (8640, 7)
    assert train_series.mean(0).abs().max() < 1e-5
    assert (train_series.std(0, unbiased=False) - 1).abs().max() < 1e-5
    # the test part is not centred: its own statistics were not used
    assert splits.test.series.double().mean(0).abs().max() > 0.1


def test_last_test_window_ends_on_the_last_test_row_and_no_window_is_dropped(etth1):
    splits, frame = etth1
    raw = frame.to_numpy()
    expected = ((raw[14400 - 96:14400] - splits.mean.double().numpy()) / splits.std.double().numpy()).T
    np.testing.assert_allclose(splits.test.y[-1].numpy(), expected, atol=1e-5)
    for part, (start, stop) in splits.borders.items():
        assert len(getattr(splits, part)) == stop - start - 512 - 96 + 1


def test_ettm_borders_are_four_times_the_hourly_ones():
    hourly = split_borders(dataset_info("ETTh2"), 0)
    assert split_borders(dataset_info("ETTm2"), 0) == {k: (4 * a, 4 * b) for k, (a, b) in hourly.items()}
    assert split_borders(dataset_info("ETTm1"), 96) == {
        "train": (0, 34560), "val": (34560 - 96, 46080), "test": (46080 - 96, 57600)}


def test_ratio_borders_for_exchange_rate_by_hand():
    # T = 7588: int(0.7 T) = int(5311.6) = 5311 train, int(0.2 T) = int(1517.6) = 1517 test, 760 validation
    assert split_borders(dataset_info("exchange_rate"), 96) == {
        "train": (0, 5311), "val": (5311 - 96, 6071), "test": (6071 - 96, 7588)}
    # national_illness, T = 966: 676 train, 193 test, 97 validation
    assert split_borders(dataset_info("national_illness"), 36) == {
        "train": (0, 676), "val": (640, 773), "test": (737, 966)}


def test_exchange_rate_window_counts(benchmark_data_dir):
    if not (benchmark_data_dir / "exchange_rate.csv").is_file():
        pytest.skip("exchange_rate.csv not available")
    splits = make_splits("exchange_rate", 96, 96, data_dir=benchmark_data_dir)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (5120, 665, 1422)  # as TSL logs print


@pytest.fixture
def shifted(tmp_path, monkeypatch):
    """A 100 x 2 synthetic 'ratio' dataset whose later rows are far from the train rows."""
    n_rows = 100
    rng = np.random.default_rng(0)
    values = rng.normal(size=(n_rows, 2)) + np.where(np.arange(n_rows) < 70, 0.0, 50.0)[:, None]
    frame = pd.DataFrame(values, columns=["a", "OT"])
    frame.insert(0, "date", pd.date_range("2021-01-01", periods=n_rows, freq="D").strftime("%Y-%m-%d"))
    frame.to_csv(tmp_path / "shifted.csv", index=False)
    monkeypatch.setitem(DATASETS, "shifted", DatasetInfo("shifted", "shifted.csv", n_rows, 2, "D", "ratio", "test"))
    return tmp_path, values


def test_synthetic_split_standardises_with_train_statistics(shifted):
    directory, values = shifted
    splits = make_splits("shifted", 5, 3, data_dir=directory)
    assert splits.borders == {"train": (0, 70), "val": (65, 80), "test": (75, 100)}
    mean, std = values[:70].mean(0), values[:70].std(0)
    np.testing.assert_allclose(splits.test.x[0].numpy(), ((values[75:80] - mean) / std).T, rtol=1e-5)
    assert splits.test.y.mean() > 10  # the shift survives: the test part was not re-centred
    assert (len(splits.train), len(splits.val), len(splits.test)) == (63, 8, 18)


def test_bad_lookback_or_horizon_is_rejected_before_reading(shifted):
    directory, _ = shifted
    for bad in (0, -3):
        with pytest.raises(ValueError, match=f"lookback must be a positive integer, got {bad}"):
            make_splits("shifted", bad, 3, data_dir=directory)
    with pytest.raises(TypeError, match="horizon must be a positive integer, got float 2.5"):
        make_splits("shifted", 5, 2.5, data_dir=directory)
    with pytest.raises(TypeError, match="lookback"):
        make_splits("shifted", True, 3, data_dir=directory)
    # too long: no val window; raised from the registry's shape before the (missing) file is looked for
    with pytest.raises(ValueError, match=r"'shifted' with lookback=10, horizon=12: the val part"):
        make_splits("shifted", 10, 12, data_dir=directory / "missing")
    with pytest.raises(ValueError, match=r"'ETTh1' with lookback=9000, horizon=96"):
        make_splits("ETTh1", 9000, 96, data_dir=directory / "missing")


def test_windows_are_views_and_move_devices_with_their_series():
    series = torch.arange(40, dtype=torch.float32).reshape(20, 2)
    ws = WindowSet.from_series(series, 4, 3)
    assert len(ws) == 20 - 4 - 3 + 1
    assert ws.x.untyped_storage().data_ptr() == series.untyped_storage().data_ptr()
    assert torch.equal(ws.x[5], series[5:9].T) and torch.equal(ws.y[5], series[9:12].T)
    idx = torch.tensor([0, 7, 13])
    bx, by = ws[idx]
    assert bx.is_contiguous() and torch.equal(bx, ws.x[idx]) and torch.equal(by, ws.y[idx])
    assert ws.to("cpu") is ws
    moved = ws.to("meta")
    assert moved.series.device.type == "meta" and moved.x.shape == ws.x.shape and moved.y.shape == ws.y.shape


def test_splits_to_moves_every_part(shifted):
    directory, _ = shifted
    splits = make_splits("shifted", 5, 3, data_dir=directory)
    moved = splits.to("meta")
    assert {moved.train.device.type, moved.val.device.type, moved.test.device.type, moved.mean.device.type} == {"meta"}
    assert splits.train.device.type == "cpu"  # the original is untouched
    assert moved.borders == splits.borders and len(moved.test) == len(splits.test)


def test_metrics_by_hand():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, 0.0], [6.0, 4.0]])
    assert mse(pred, target).item() == pytest.approx((0 + 4 + 9 + 0) / 4)
    assert mae(pred, target).item() == pytest.approx((0 + 2 + 3 + 0) / 4)
    with pytest.raises(ValueError, match=r"same shape, got \(2, 2\) and \(4,\)"):
        mse(pred, target.flatten())
