"""Benchmark data, window splits, the toy problem and metrics (see ARCHITECTURE.md, "Data").

- :mod:`.registry`: the nine benchmark datasets (``DATASETS``, ``dataset_info``, ``dataset_path``,
  ``load_dataset``) and ``DataError``;
- :mod:`.splits`: ``make_splits`` → ``Splits`` of ``WindowSet`` s, Time-Series-Library conventions;
- :mod:`.toy`: ``make_toy`` (SAMformer §2.2) and ``oracle_least_squares``;
- :mod:`.metrics`: ``mse``, ``mae``.
"""

from .metrics import mae, mse
from .registry import (
    DATA_ENV_VAR,
    DATASETS,
    RAW_DATA_DIR,
    DataError,
    DataFileMissingError,
    DatasetInfo,
    dataset_info,
    dataset_path,
    load_dataset,
    verify_file,
)
from .splits import Splits, WindowSet, check_window_sizes, make_splits, split_borders
from .corrupt import add_input_noise, add_target_outliers, noise_std_for_snr, signal_power
from .toy import DEFAULT_TOY_NOISE_STD, OracleFit, make_toy, oracle_least_squares

__all__ = [
    "DATA_ENV_VAR", "DATASETS", "RAW_DATA_DIR", "DataError", "DataFileMissingError", "DatasetInfo",
    "dataset_info", "dataset_path", "load_dataset", "verify_file",
    "Splits", "WindowSet", "check_window_sizes", "make_splits", "split_borders",
    "DEFAULT_TOY_NOISE_STD", "OracleFit", "make_toy", "oracle_least_squares",
    "mse", "mae",
    "add_input_noise", "add_target_outliers", "noise_std_for_snr", "signal_power",
]
