"""Forecasting models: the SAMformer family, a standard transformer baseline, DLinear and DLinear with the OCE head.

Names are loaded lazily so that importing one model does not import the others.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RevIN": "revin",
    "SigmaReparamLinear": "sigma_reparam",
    "ChannelTransformer": "channel_transformer",
    "StandardTransformer": "standard_transformer",
    "DLinear": "dlinear",
    "DLinearOCE": "dlinear",
    "SeriesDecomposition": "dlinear",
    "TSMixer": "tsmixer",
    "DLinearHuber": "dlinear",
    "DLinearQuantile": "dlinear",
    "MinMaxWindowOCE": "dlinear",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
