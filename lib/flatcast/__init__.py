"""flatcast: why small transformers for multivariate time-series forecasting generalize badly, and what fixes it.

The library behind the flatcast book. One concept per module; see ARCHITECTURE.md at the repository root.
"""

__version__ = "0.1.0"
