"""Small shared helpers: seeding and device resolution."""

from __future__ import annotations

import math
import os
import random
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["seed_everything", "resolve_device", "torch_threads", "eval_mode", "model_device", "check_positive_int",
           "check_nonnegative"]

_DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) with ``seed``; return a CPU generator seeded the same way.

    Same seed, same numbers on CPU: every random draw in the library goes through these generators.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | torch.device`` into a ``torch.device``.

    ``"auto"`` picks CUDA when it is available, else the CPU. Asking for CUDA on a machine without it raises.
    """
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        name = device.strip().lower()
        base = name.split(":")[0]
        if base not in _DEVICE_NAMES:
            raise ValueError(f"unknown device {device!r}: use one of {_DEVICE_NAMES} (or 'cuda:N')")
        if base == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(name)
    else:
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available on this machine")
    return dev


@contextmanager
def torch_threads(n: int | None):
    """Run the enclosed block with ``torch.set_num_threads(n)`` and restore the previous count afterwards.

    Small models (the toy problem's) gain nothing from intra-op threads, and one thread keeps them fast when
    another process shares the cores (two OpenMP threads on a busy core slow each step down many times).
    ``None`` leaves the setting alone.
    """
    if n is None:
        yield
        return
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode (dropout off) for the duration, restoring every submodule's own training flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is a positive ``int`` (not a bool); raise ``ValueError`` naming it otherwise."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_nonnegative(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite real number ≥ 0; ``TypeError`` for a non-number (bools
    included), ``ValueError`` naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


_ALLOCATOR_TUNED = False
#: glibc's mallopt parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory_in_heap(mmap_threshold: int = 256 * 2**20, trim_threshold: int = 512 * 2**20) -> bool:
    """Stop glibc's malloc from handing freed tensor memory back to the OS between training steps.

    A training step of the small models here allocates and frees the same few hundred kilobyte-to-megabyte
    tensors thousands of times. By default glibc serves such blocks with ``mmap`` (or trims the heap's top) and
    returns them on ``free``, so every step page-faults its memory in again; with k batched members (blocks of
    a few MB) this costs about a third of the step. Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` keeps
    freed blocks for reuse (the process holds on to its peak heap, a few hundred MB at most here). This is the
    effect PyTorch's CPU performance guide gets from preloading jemalloc/tcmalloc, with the allocator already
    loaded. Process-wide, idempotent; a no-op (returns ``False``) where the C library is not glibc or when the
    environment sets ``FLATCAST_DEFAULT_MALLOC=1``. Called by :func:`flatcast.trainer.fit` and ``fit_many``.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if os.environ.get("FLATCAST_DEFAULT_MALLOC") == "1":
        return False
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok
