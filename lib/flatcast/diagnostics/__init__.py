"""Measuring instruments of the study: Hessian sharpness, loss landscapes, attention entropy and rank, influence.

Submodules: :mod:`.hessian`, :mod:`.landscape`, :mod:`.attention`, :mod:`.influence`, :mod:`.interpolation`,
:mod:`.rank_correlation`, :mod:`.seed_tests`, :mod:`.step_memory` (imported on first use).
"""

from __future__ import annotations

import importlib

_SUBMODULES = ("hessian", "landscape", "attention", "influence", "interpolation", "rank_correlation", "seed_tests", "step_memory")

__all__ = list(_SUBMODULES)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
