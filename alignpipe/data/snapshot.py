"""Parquet snapshots of a stage's input rows, addressed by a content hash.

The hash is taken over the rows themselves (canonical JSON, sorted keys), not over the Parquet
bytes, so it does not change with the pyarrow version or compression settings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def content_hash(rows: list[dict[str, Any]]) -> str:
    """sha256 of the rows as canonical JSON lines."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def write_snapshot(rows: list[dict[str, Any]], path: str | Path) -> str:
    """Write rows to Parquet at `path` and return their content hash."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not rows:
        raise ValueError(f"refusing to snapshot an empty dataset to {path}")
    pq.write_table(pa.Table.from_pylist(rows), Path(path))
    return content_hash(rows)


def read_snapshot(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a Parquet snapshot."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(path)).to_pylist()
