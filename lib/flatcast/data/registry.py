"""The nine long-term-forecasting benchmark datasets: where they live, what they must look like, how to load them.

Every dataset is a CSV in the Autoformer / Informer / Time-Series-Library (TSL) layout: a ``date`` column, then one
column per variable (the target ``OT`` last). Following TSL with ``features='M'``, every non-date column is a
channel. SAMformer (App. A.2, Table 5) and OCE-TS (App. C, Table 5) use exactly these files.

Lookup order for a file (:func:`dataset_path`):

1. the directory in the environment variable ``FLATCAST_DATA`` (a relative path is taken from the current working
   directory, or failing that from the repository root — so CI's ``FLATCAST_DATA=../shared/data`` works from
   ``book/`` too);
2. ``<repo>/data/raw/`` (git-ignored);
3. a download into ``<repo>/data/raw/`` — only the ETT files have a public raw URL
   (zhouhaoyi/ETDataset on GitHub); for the others the error says where to get the file and where to put it.

Every file found is checked before use: size (a short file is reported as truncated), sha256 (from
``MANIFEST.csv``; none is known for electricity and traffic), header, that every value parses as a finite float,
that dates parse, and the expected shape. Any failure raises :class:`DataError` naming the file and the problem;
a wrong file never silently yields numbers. The sha256 check is cached in-process per (path, mtime, size).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "stage_datasets",
    "DataError",
    "DataFileMissingError",
    "DatasetInfo",
    "DATASETS",
    "DATA_ENV_VAR",
    "REPO_ROOT",
    "RAW_DATA_DIR",
    "dataset_info",
    "dataset_path",
    "load_dataset",
    "verify_file",
]

DATA_ENV_VAR = "FLATCAST_DATA"
REPO_ROOT = Path(__file__).resolve().parents[3]
RAW_DATA_DIR = REPO_ROOT / "data" / "raw"

_ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{file}"
_TSL_HOME = (
    "the Autoformer / Time-Series-Library dataset bundle (the Google Drive folder linked from the README of "
    "https://github.com/thuml/Time-Series-Library or https://github.com/thuml/Autoformer)"
)


class DataError(ValueError):
    """A benchmark data file is missing, truncated, malformed, of the wrong shape or fails its checksum."""


class DataFileMissingError(DataError, FileNotFoundError):
    """The data file was found nowhere and could not be downloaded; the message says where to put it."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a benchmark file must be.

    ``rows`` counts data rows (no header); ``n_channels`` the columns after ``date``. ``sha256``/``n_bytes`` are
    ``None`` when unknown (electricity, traffic). ``freq`` is a pandas offset alias. ``split`` is ``"ett_hour"``,
    ``"ett_minute"`` (the fixed 12/4/4-month TSL borders) or ``"ratio"`` (TSL ``Dataset_Custom``: 70 % train,
    20 % test, the rest validation).
    """

    name: str
    file: str
    rows: int
    n_channels: int
    freq: str
    split: str
    home: str
    sha256: str | None = None
    n_bytes: int | None = None
    url: str | None = None


def _ett(name: str, rows: int, freq: str, split: str, sha256: str, n_bytes: int) -> DatasetInfo:
    file = f"{name}.csv"
    return DatasetInfo(
        name=name,
        file=file,
        rows=rows,
        n_channels=7,
        freq=freq,
        split=split,
        home="https://github.com/zhouhaoyi/ETDataset (ETT-small/)",
        sha256=sha256,
        n_bytes=n_bytes,
        url=_ETT_URL.format(file=file),
    )


# Shapes, checksums and sizes from ../shared/data/MANIFEST.csv (electricity/traffic: shapes from the TSL papers).
DATASETS: dict[str, DatasetInfo] = {
    "ETTh1": _ett("ETTh1", 17420, "h", "ett_hour",
                  "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066", 2589657),
    "ETTh2": _ett("ETTh2", 17420, "h", "ett_hour",
                  "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b", 2417960),
    "ETTm1": _ett("ETTm1", 69680, "15min", "ett_minute",
                  "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e", 10360719),
    "ETTm2": _ett("ETTm2", 69680, "15min", "ett_minute",
                  "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd", 9677236),
    "electricity": DatasetInfo("electricity", "electricity.csv", 26304, 321, "h", "ratio", _TSL_HOME),
    "exchange_rate": DatasetInfo(
        "exchange_rate", "exchange_rate.csv", 7588, 8, "D", "ratio", _TSL_HOME,
        sha256="d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97", n_bytes=630212),
    "traffic": DatasetInfo("traffic", "traffic.csv", 17544, 862, "h", "ratio", _TSL_HOME),
    "weather": DatasetInfo(
        "weather", "weather.csv", 52696, 21, "10min", "ratio", _TSL_HOME,
        sha256="9b2b19b13e342d9c9b9c51620d42b4be232df7fba30e7f5c4968b7c79ab138ad", n_bytes=7182728),
    "national_illness": DatasetInfo(
        "national_illness", "national_illness.csv", 966, 7, "W", "ratio", _TSL_HOME,
        sha256="8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395", n_bytes=66653),
}


def dataset_info(name: str) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of ``name``; an unknown name raises ``KeyError`` listing the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__} {name!r}")
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}") from None


def _env_data_dir() -> Path | None:
    value = os.environ.get(DATA_ENV_VAR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if path.is_absolute() or path.is_dir():
        return path
    from_repo = REPO_ROOT / path
    return from_repo if from_repo.is_dir() else path


def _download(url: str, destination: Path) -> None:
    """Fetch ``url`` into ``destination`` (through a temporary file, so a failed download leaves nothing)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)


def dataset_path(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Find the file of dataset ``name`` (see the module docstring for the lookup order) and return its path.

    ``data_dir`` replaces the lookup (only that directory is searched, and a download goes there). The file is
    not verified here; :func:`load_dataset` does that. Raises :class:`DataFileMissingError` saying what was
    tried and where to put the file.
    """
    info = dataset_info(name)
    if data_dir is not None:
        candidates = [Path(data_dir)]
        target_dir = Path(data_dir)
    else:
        env_dir = _env_data_dir()
        candidates = ([env_dir] if env_dir is not None else []) + [RAW_DATA_DIR]
        target_dir = RAW_DATA_DIR
    tried = []
    for directory in candidates:
        path = directory / info.file
        if path.is_file():
            return path
        tried.append(str(path))
    download_note = ""
    if info.url is not None and download:
        destination = target_dir / info.file
        try:
            _download(info.url, destination)
        except Exception as exc:  # noqa: BLE001 — any failure becomes the clear message below
            download_note = f"; downloading {info.url} failed ({type(exc).__name__}: {exc})"
        else:
            try:
                verify_file(destination, info)
            except DataError as exc:
                destination.unlink(missing_ok=True)
                raise DataError(f"the file downloaded from {info.url} was rejected and deleted: {exc}") from exc
            return destination
    elif info.url is not None:
        download_note = f"; download from {info.url} was not attempted (download=False)"
    where = f"{target_dir / info.file}" if data_dir is not None else (
        f"{RAW_DATA_DIR / info.file}, or into a directory named by the environment variable {DATA_ENV_VAR}")
    raise DataFileMissingError(
        f"data file {info.file} for dataset {name!r} not found (looked at: {', '.join(tried)}){download_note}. "
        f"Get it from {info.home}"
        + (f" (raw file: {info.url})" if info.url else "")
        + f" and put it at {where}."
    )


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def verify_file(path: str | os.PathLike, info: DatasetInfo) -> None:
    """Check the size and sha256 of ``path`` against ``info`` (skipped where unknown); raise :class:`DataError`."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"data file {path} is empty (truncated?)")
    if info.n_bytes is not None and size != info.n_bytes:
        problem = "truncated" if size < info.n_bytes else "larger than expected"
        raise DataError(
            f"data file {path} is {problem}: {size} bytes, expected {info.n_bytes}. Replace it with a fresh copy "
            f"from {info.home}.")
    if info.sha256 is not None:
        actual = _sha256(path)
        if actual != info.sha256:
            raise DataError(
                f"data file {path} fails its checksum: sha256 {actual}, expected {info.sha256}. It is not the "
                f"published {info.file}; replace it with a fresh copy from {info.home}.")


_FRAME_CACHE: OrderedDict[tuple[str, int, int, str], pd.DataFrame] = OrderedDict()
_FRAME_CACHE_SIZE = 4


def _parse(path: Path, info: DatasetInfo) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"data file {path} is malformed: {exc}") from exc
    if raw.columns.size == 0 or raw.columns[0] != "date":
        raise DataError(f"data file {path} is malformed: the first column must be 'date', got {raw.columns[:1].tolist()}")
    values = raw.iloc[:, 1:]
    numeric = values.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().to_numpy() | ~np.isfinite(numeric.to_numpy(dtype=np.float64))
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"data file {path} is malformed (or truncated): {int(bad.sum())} value(s) are missing or not finite "
            f"numbers, the first at data row {row} column {values.columns[col]!r} ({values.iat[row, col]!r})")
    try:  # one inferred format for the whole column (fast); per-element parsing only as a fallback
        dates = pd.to_datetime(raw["date"], errors="raise")
    except (ValueError, TypeError):
        dates = pd.to_datetime(raw["date"], errors="coerce", format="mixed")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise DataError(f"data file {path} is malformed: date {raw['date'].iat[row]!r} at data row {row} does not parse")
    if (np.diff(dates.to_numpy().astype("datetime64[ns]").astype(np.int64)) < 0).any():
        raise DataError(f"data file {path} is malformed: its dates go backwards")
    frame = numeric.astype(np.float64)
    if "OT" in frame.columns:  # TSL puts the target last; it already is in every published file
        frame = frame[[c for c in frame.columns if c != "OT"] + ["OT"]]
    frame.index = pd.DatetimeIndex(dates, name="date")
    if frame.shape != (info.rows, info.n_channels):
        raise DataError(
            f"data file {path} has the wrong shape: {frame.shape[0]} rows x {frame.shape[1]} channels, expected "
            f"{info.rows} x {info.n_channels} for dataset {info.name!r}")
    return frame


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = True,
                 verify: bool = True) -> pd.DataFrame:
    """Load dataset ``name`` as a float64 DataFrame: a ``DatetimeIndex`` named ``date``, one column per channel.

    The file is located by :func:`dataset_path`, verified (size, sha256 — cached per (path, mtime, size)) and
    parsed; any problem raises :class:`DataError` naming the file. ``verify=False`` skips only the size and
    checksum (never the parse and shape checks). Parsed frames are cached in-process; a copy is returned.
    """
    info = dataset_info(name)
    path = dataset_path(name, data_dir=data_dir, download=download)
    if verify:
        verify_file(path, info)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, repr(info))
    if key not in _FRAME_CACHE:
        _FRAME_CACHE[key] = _parse(path, info)
        while len(_FRAME_CACHE) > _FRAME_CACHE_SIZE:
            _FRAME_CACHE.popitem(last=False)
    _FRAME_CACHE.move_to_end(key)
    return _FRAME_CACHE[key].copy()


def stage_datasets(destination: str | os.PathLike, names: Sequence[str] | None = None) -> dict[str, str]:
    """Copy the CSV of each dataset in ``names`` (default: every registered one with a known checksum) into
    ``destination``, checked against its sha256 before and after the copy; a file already there and intact is kept.

    For machines that cannot reach the data (the lent GPU machine: ``make gpu-prepare`` stages into ``.gpu/data``,
    which the device tool carries). Returns ``{name: "copied" | "kept" | "missing: <why>"}``; a corrupt source
    raises :class:`DataError` (it is never copied).
    """
    import shutil

    target = Path(destination)
    target.mkdir(parents=True, exist_ok=True)
    chosen = [n for n, info in DATASETS.items() if info.sha256] if names is None else list(names)
    report: dict[str, str] = {}
    for name in chosen:
        info = dataset_info(name)
        staged = target / info.file
        if staged.is_file():
            try:
                verify_file(staged, info)
                report[name] = "kept"
                continue
            except DataError:
                staged.unlink()
        try:
            source = dataset_path(name, download=False)
        except DataFileMissingError as exc:
            report[name] = f"missing: {exc}"
            continue
        verify_file(source, info)
        shutil.copyfile(source, staged)
        verify_file(staged, info)
        report[name] = "copied"
    return report
