"""The SQLite results store: runs, measurements and raw samples, versioned, in WAL mode.

- ``store``: ``Store``, the one way in (open or create, write per case, read, export);
- ``schema``: the tables, migrations with a backup first, quick_check and quarantine.

Imports only the data model (core.results, core.errors, core.paths).
"""

from __future__ import annotations

from core.store.store import Store, default_store_path, open_store

__all__ = ["Store", "default_store_path", "open_store"]
