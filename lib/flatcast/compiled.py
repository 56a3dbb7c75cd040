"""Opt-in ``torch.compile`` of the training step's hot kernel, with an eager fallback (issue #13).

The SAMformer step's cost on a CPU is mostly per-operator overhead: the hand-derived loss and gradient
(:func:`flatcast.models.channel_gradient.loss_and_gradient`) is ~100 small operators per evaluation around four
window products. Compiled by inductor into a few fused loops, one evaluation takes about half the time, and a
SAM step (two evaluations, then SAM's ascent and Adam's fused update, which stay eager) about 0.75 of it.

Compiling costs ~20–45 s per input shape and process on a 2-core CPU (less when inductor's on-disk cache already
holds the kernels), so it pays for paper-size runs only and is **off by default**: set the environment variable
``FLATCAST_COMPILE=1`` (inherited by Ray workers and subprocesses; ``scripts/benchmark_training.py --compile``
times both). Shapes are static (``dynamic=False``): a run compiles its full training batch and its last, shorter
batch once each (and :data:`RECOMPILE_LIMIT` raises torch's limit of 8 compiled variants per function, which a grid
worker training many cells in one process would otherwise reach after two cells). A compiled evaluation computes the
same mathematics with a different order of floating-point operations, so its numbers agree with the eager ones to
float rounding, not bit for bit; at a fixed setting, machine and thread count, the same seed gives the same numbers.
Compiled CPU kernels keep the thread count they were compiled with. :func:`flatcast.provenance.provenance` records the setting.

If compiling fails (no C++ compiler, an unsupported backend), the first call warns once and every later call runs
eagerly: the result is the same function's, only slower.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable

import torch

__all__ = ["COMPILE_ENV_VAR", "compile_enabled", "CompiledOrEager"]

COMPILE_ENV_VAR = "FLATCAST_COMPILE"


def compile_enabled() -> bool:
    """Whether :class:`CompiledOrEager` functions compile: ``FLATCAST_COMPILE`` is ``1`` (on) or unset/``0``
    (off); any other value is an error, so that a typo does not silently time the eager path."""
    value = os.environ.get(COMPILE_ENV_VAR, "0").strip()
    if value not in {"0", "1", ""}:
        raise ValueError(f"{COMPILE_ENV_VAR} must be 0 or 1, got {value!r}")
    return value == "1"


#: compiled variants kept per function (torch's default is 8): a runner that trains many cells in one process meets
#: a new shape per dataset × horizon × batch (full and last) × first/second evaluation, and torch runs every shape
#: past its limit eagerly
RECOMPILE_LIMIT = 256


def _allow_recompiles() -> None:
    import torch._dynamo.config as dynamo_config

    if getattr(dynamo_config, "recompile_limit", RECOMPILE_LIMIT) < RECOMPILE_LIMIT:
        dynamo_config.recompile_limit = RECOMPILE_LIMIT


class CompiledOrEager:
    """``fn`` compiled with ``torch.compile(fn, dynamic=False)`` while :func:`compile_enabled`, else ``fn`` itself.

    The compiled function is built on the first call with compiling enabled. An exception raised while compiling
    or running the compiled function makes this wrapper warn once and run ``fn`` eagerly from then on (the same
    call is repeated eagerly, so an error of ``fn`` itself still surfaces, from the eager code). ``fn`` must not
    modify its inputs in place, so that the repeat sees them unchanged.
    """

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self._compiled: Callable[..., Any] | None = None
        self.failure: BaseException | None = None  # why compiling was given up, once it was

    @property
    def uses_compiled(self) -> bool:
        """True when the next call would run the compiled function."""
        return compile_enabled() and self.failure is None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.uses_compiled:
            return self.fn(*args, **kwargs)
        if self._compiled is None:
            _allow_recompiles()
            self._compiled = torch.compile(self.fn, dynamic=False)
        try:
            return self._compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any compile/backend failure falls back to the eager function
            self.failure = error
            warnings.warn(f"torch.compile of {getattr(self.fn, '__qualname__', self.fn)} failed "
                          f"({type(error).__name__}: {str(error)[:300]}); running it eagerly from now on",
                          RuntimeWarning, stacklevel=2)
            return self.fn(*args, **kwargs)
