"""Cell identity and the durable, atomic result store (one JSON file per finished cell).

Identity
    ``cell_key(cell)`` is the sha256 of the canonical JSON of the cell's config (recipe, dataset, horizon,
    look-back, seeds, protocol, the recipe's lr/ρ), the dataset file's sha256 (the registry checks every file
    against it) and a fingerprint of the source of the code that computes the result (the model, its optimizer,
    the trainer, the splits, RevIN). Change any of them and the cell is a new cell; nothing is silently reused.
    The table a cell appears in is *not* part of its identity, so tables that share cells share results.

Store
    ``<root>/cells/<dataset>_H<h>_<recipe>_<key[:16]>.json`` (diff-able, committed). A file is written to a
    temporary name in the same folder, flushed and fsync'ed, then renamed over the final name with
    ``os.replace`` (atomic on POSIX) and the folder is fsync'ed: a reader sees either no file or a complete one,
    whatever moment the writer is killed (SIGKILL, power loss). A file is read as complete only if it parses,
    says ``"status": "done"`` and carries the key its name promises; anything else is ignored (and the cell
    recomputed). Failed cells go to ``<root>/failed/`` with their error. Leftover ``*.tmp`` files of a killed
    writer are never read and are removed by the next runner.

One runner per store: :func:`runner_lock` takes an exclusive ``flock`` on ``<root>/.lock`` (released by the kernel
when the process dies, even on SIGKILL), so two runners can never both compute the same cell.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path

from flatcast.data import dataset_info

from .grids import Cell

__all__ = ["STORE_DIR", "cell_key", "cell_identity", "code_fingerprint", "ResultStore", "runner_lock",
           "StoreLocked"]

STORE_DIR = Path(__file__).resolve().parents[3] / "data" / "results" / "benchmark"
LIB = Path(__file__).resolve().parents[1]

#: Source files whose content decides a recipe's result (beyond its config).
_COMMON_CODE = ("trainer.py", "data/splits.py", "data/metrics.py", "models/revin.py")
_RECIPE_CODE = {
    "samformer": ("models/channel_transformer.py", "models/channel_gradient.py", "batched.py", "optim/sam.py"),
    "transformer": ("models/channel_transformer.py", "models/channel_gradient.py", "batched.py"),
    "transformer_eeo": ("models/channel_transformer.py", "models/channel_gradient.py", "optim/sam.py",
                        "optim/eeo.py"),
    "identity_sam": ("models/channel_transformer.py", "models/channel_gradient.py", "batched.py", "optim/sam.py"),
    "temporal": ("models/channel_transformer.py", "batched.py"),
    "tsmixer": ("models/tsmixer.py",),
    "tsmixer_sam": ("models/tsmixer.py", "optim/sam.py"),
    "dlinear": ("models/dlinear.py",),
    "dlinear_oce": ("models/dlinear.py", "targets.py", "losses.py"),
}


def code_fingerprint(recipe: str) -> str:
    """sha256 over the source files that compute ``recipe``'s result (:data:`_RECIPE_CODE` + the trainer)."""
    if recipe not in _RECIPE_CODE:
        raise KeyError(f"unknown recipe {recipe!r}: use one of {sorted(_RECIPE_CODE)}")
    h = hashlib.sha256()
    for rel in sorted(set(_COMMON_CODE + _RECIPE_CODE[recipe])):
        h.update(rel.encode())
        h.update((LIB / rel).read_bytes())
    return h.hexdigest()


def _hyper(cell: Cell) -> dict:
    from flatcast import recipes

    if cell.recipe in recipes.RECIPES:
        r = recipes.RECIPES[cell.recipe]
        lr = recipes.paper_lr(cell.dataset, fallback=True)
        rho = recipes.paper_rho(cell.dataset, cell.horizon, fallback=True) if r.uses_rho else None
        return {"lr": lr, "rho": rho, "cosine": True}
    r = recipes.BASELINE_RECIPES[cell.recipe]
    if r.model == "tsmixer":
        from flatcast.models.tsmixer import tsmixer_settings

        lr = recipes.paper_lr(cell.dataset, fallback=True)
        rho = recipes.paper_rho(cell.dataset, cell.horizon, model="TSMixer+SAM", fallback=True) if r.uses_rho \
            else None
        return {"lr": lr, "rho": rho, "cosine": True, **tsmixer_settings(cell.dataset)}
    extra = {"n_bins": recipes.OCE_TRAINING["n_bins"], "exact_loss": recipes.OCE_TRAINING["exact_loss"]} \
        if r.model == "dlinear_oce" else {}
    return {"lr": recipes.OCE_TRAINING["lr"], "rho": None, "cosine": recipes.OCE_TRAINING["cosine"], **extra}


def cell_identity(cell: Cell) -> dict:
    """Everything the key is a hash of: config, hyperparameters, data checksum, code fingerprint."""
    return {"config": cell.config(), "hyper": _hyper(cell), "data_sha256": dataset_info(cell.dataset).sha256,
            "code": code_fingerprint(cell.recipe)}


def cell_key(cell: Cell) -> str:
    """The cell's identity hash (sha256 hex of the canonical JSON of :func:`cell_identity`)."""
    blob = json.dumps(cell_identity(cell), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class StoreLocked(RuntimeError):
    """Another runner holds the store."""


@contextlib.contextmanager
def runner_lock(root: Path):
    """Exclusive, non-blocking ``flock`` on ``root/.lock`` for the lifetime of one runner."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreLocked(f"another benchmark runner is using {root} (lock {root / '.lock'})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def _atomic_write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(payload, indent=1, sort_keys=True, default=float) + "\n"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ResultStore:
    """Finished cells under ``root/cells``, failed ones under ``root/failed`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else STORE_DIR
        self.cells_dir = self.root / "cells"
        self.failed_dir = self.root / "failed"

    @staticmethod
    def filename(cell: Cell, key: str) -> str:
        return f"{cell.dataset}_H{cell.horizon}_{cell.recipe}_{key[:16]}.json"

    def path(self, cell: Cell, key: str) -> Path:
        return self.cells_dir / self.filename(cell, key)

    def get(self, cell: Cell, key: str | None = None) -> dict | None:
        """The finished result of ``cell``, or ``None`` if there is no complete, matching file."""
        key = cell_key(cell) if key is None else key
        path = self.path(cell, key)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(payload, dict) or payload.get("status") != "done" or payload.get("key") != key:
            return None
        return payload

    def has(self, cell: Cell, key: str | None = None) -> bool:
        return self.get(cell, key) is not None

    def older(self, cell: Cell) -> dict | None:
        """A finished result of ``cell`` computed by *other code* — the same config, hyperparameters and data
        checksum, another :func:`code_fingerprint` — or ``None`` (the most recent such file when several)."""
        wanted = cell_identity(cell)
        same = {name: wanted[name] for name in ("config", "hyper", "data_sha256")}
        found = []
        for path in self.cells_dir.glob(f"{cell.dataset}_H{cell.horizon}_{cell.recipe}_*.json"):
            try:
                payload = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(payload, dict):
                continue
            identity = payload.get("identity", {})
            if (payload.get("status") == "done" and identity.get("code") != wanted["code"]
                    and all(identity.get(name) == value for name, value in same.items())):
                found.append(payload)
        found.sort(key=lambda r: str(r.get("provenance", {}).get("date", "")))
        return found[-1] if found else None

    def put(self, cell: Cell, key: str, result: dict) -> Path:
        """Write a finished cell atomically (and drop its failure record, if any)."""
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        payload = {"status": "done", "key": key, "identity": cell_identity(cell), **result}
        path = self.path(cell, key)
        _atomic_write_json(path, payload)
        with contextlib.suppress(FileNotFoundError):
            (self.failed_dir / self.filename(cell, key)).unlink()
        return path

    def put_failure(self, cell: Cell, key: str, error: str) -> Path:
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        path = self.failed_dir / self.filename(cell, key)
        _atomic_write_json(path, {"status": "failed", "key": key, "cell": cell.config(), "error": error})
        return path

    def failure(self, cell: Cell, key: str) -> dict | None:
        try:
            payload = json.loads((self.failed_dir / self.filename(cell, key)).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return payload if payload.get("key") == key else None

    def clean_temporaries(self) -> int:
        """Remove ``*.tmp`` files a killed writer left behind (only call while holding :func:`runner_lock`)."""
        n = 0
        for folder in (self.cells_dir, self.failed_dir):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                    n += 1
        return n

    def all_results(self) -> list[dict]:
        """Every complete result file in the store (whatever grid it belongs to)."""
        out = []
        if self.cells_dir.is_dir():
            for path in sorted(self.cells_dir.glob("*.json")):
                try:
                    payload = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(payload, dict) and payload.get("status") == "done":
                    out.append(payload)
        return out
