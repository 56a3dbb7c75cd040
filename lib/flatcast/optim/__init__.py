"""Optimizers: sharpness-aware minimisation (SAM) and the EEO optimizer of EEO-TFV §3.6, plus the
finite-difference Hessian-vector product ``fd_hvp`` (EEO-TFV Lemma 3.3) that EEO's escape step uses.

Both optimizers are ``torch.optim.Optimizer`` subclasses driven by ``step(closure)``; see ARCHITECTURE.md.
"""

from .eeo import EEO, fd_hvp
from .sam import SAM

__all__ = ["EEO", "SAM", "fd_hvp"]
