"""The benchmark runner: declared grids of cells, a content-addressed atomic result store, a Ray executor.

- :mod:`.grids`: :class:`Cell`, :data:`GRIDS`, :func:`expand` (a grid → its cells, input checked first);
- :mod:`.store`: :func:`cell_key` (identity hash), :class:`ResultStore` (one JSON per finished cell, atomic);
- :mod:`.executor`: :func:`run_cells` (Ray core tasks, embedded local cluster by default), :func:`cell_status`.

CLI: ``python -m flatcast.benchmark run|status|report`` (see ``--help``).
"""

from .executor import BACKENDS, RunSummary, cell_status, run_cell, run_cells
from .grids import GRIDS, PROFILES, RECIPE_LABELS, Cell, Grid, expand, grid
from .store import STORE_DIR, ResultStore, StoreLocked, cell_identity, cell_key, code_fingerprint

__all__ = ["BACKENDS", "RunSummary", "cell_status", "run_cell", "run_cells", "GRIDS", "PROFILES",
           "RECIPE_LABELS", "Cell", "Grid", "expand", "grid", "STORE_DIR", "ResultStore", "StoreLocked",
           "cell_identity", "cell_key", "code_fingerprint"]
