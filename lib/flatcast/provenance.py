"""Provenance of a results file: which code, on which machine and software, when, by which command."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

__all__ = ["provenance", "runner_start", "device_type", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def provenance(device: str | torch.device, command: list[str] | None = None) -> dict[str, object]:
    """A dict with the git commit (and whether the tree was dirty), device, torch/python versions, UTC date
    and the command line that produced a results file; ``compiled`` says whether the training step's kernel was
    compiled (``FLATCAST_COMPILE=1``, :mod:`flatcast.compiled`)."""
    from flatcast.compiled import compile_enabled

    device = torch.device(device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or
                                                                                  platform.machine())
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "device": f"{device.type}: {device_name}",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "compiled": compile_enabled(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(command if command is not None else [Path(sys.executable).name, *sys.argv]),
    }


def runner_start(device: str | torch.device) -> dict[str, object]:
    """The commit, dirty flag and date of :func:`provenance` now: taken when a long runner starts, it names the code
    the process runs, which a record's own provenance (taken when the record is written) may not, once commits land
    while it trains."""
    return {key: value for key, value in provenance(device).items() if key in ("commit", "dirty", "date")}


def device_type(record: dict[str, Any]) -> str:
    """``"cpu"``, ``"cuda"``, …: what trained a run, from the record's own ``device`` or its provenance's (written by
    :func:`provenance` as ``"cuda: NVIDIA H200"`` or ``"cpu: x86_64"``); a record that names none ran on the CPU
    (every run before a GPU was lent)."""
    prov = record.get("provenance")
    named = record.get("device") or (prov.get("device") if isinstance(prov, dict) else None) or "cpu"
    return str(named).split(":")[0].strip()
