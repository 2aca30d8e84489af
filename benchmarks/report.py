"""What every benchmark does last: print its results as a key/value table and save them
as JSON.

Imported by the scripts of this folder (run as `python benchmarks/bench_*.py`, which
puts this folder on sys.path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable


def print_table(
    result: dict, keys: Iterable[str] | None = None, float_format: str = ".4g"
) -> None:
    """One aligned `key  value` line per entry of `result` (only `keys`, in order, if
    given).
    """
    keys = list(result if keys is None else keys)
    if not keys:
        return
    width = max(map(len, keys))
    for k in keys:
        v = result[k]
        print(
            f"{k:<{width}}  {v:{float_format}}"
            if isinstance(v, float)
            else f"{k:<{width}}  {v}"
        )


def save_json(result: dict, path: Path) -> None:
    """Write `result` to `path` (folders made as needed) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
