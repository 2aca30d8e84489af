"""Reading a written teacher cache back, checked: `verify_files` compares its files with
the checksums recorded when it was written, `load_arrays` reads whole arrays into RAM
and `load_rows` a range of their rows, refusing a missing shard file (zarr would read it
as zeros) or a damaged chunk with a CacheMismatchError that names the array, never wrong
data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eoid.errors import CacheMismatchError
from eoid.files import file_sha256


def verify_files(
    path: Path, checksums: dict[str, str], arrays: tuple[str, ...] | None = None
) -> None:
    """Refuse (CacheMismatchError) a cache whose files differ from `checksums`
    (manifest.json's).

    arrays: check only these arrays' files (and the metadata); None checks every file.
    """
    chosen = {
        rel: digest
        for rel, digest in checksums.items()
        if arrays is None or "/" not in rel or rel.split("/", 1)[0] in arrays
    }
    bad = [
        rel
        for rel, digest in chosen.items()
        if not (path / rel).is_file() or file_sha256(path / rel) != digest
    ]
    if bad:
        shown = ", ".join(
            f"{rel} ({'changed' if (path / rel).is_file() else 'missing'})"
            for rel in bad[:3]
        )
        raise CacheMismatchError(
            f"{path}: {len(bad)} file(s) differ from the checksums recorded when the "
            f"cache was written: {shown}{' ...' if len(bad) > 3 else ''}; it was "
            "damaged or edited since. Copy it again, or rebuild it with "
            "`eoid cache-teacher`."
        )


def load_arrays(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Whole arrays into RAM (one read each: ~0.3 s for a HICO-size cache)."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    for n in names:
        _require_shard_files(path, n, group[n])
    return {n: _read_rows(path, n, group[n], slice(None)) for n in names}


def require_shard_files(path: Path, names: tuple[str, ...]) -> None:
    """Refuse (CacheMismatchError) arrays with a missing shard file, before reading
    them by range."""
    import zarr

    if names:
        group = zarr.open_group(str(path), mode="r")
        for n in names:
            _require_shard_files(path, n, group[n])


def load_rows(
    path: Path, names: tuple[str, ...], lo: int, hi: int
) -> dict[str, np.ndarray]:
    """Rows lo:hi of each array (the shards they lie in are read, not the array)."""
    import zarr

    if not names:
        return {}
    group = zarr.open_group(str(path), mode="r")
    return {n: _read_rows(path, n, group[n], slice(lo, hi)) for n in names}


def _read_rows(path: Path, name: str, array: Any, rows: slice) -> np.ndarray:
    """Rows of one array; a damaged chunk is a CacheMismatchError naming the array."""
    try:
        return np.asarray(array[rows])
    except (RuntimeError, ValueError, OSError) as err:
        _settle_other_reads()
        raise CacheMismatchError(
            f"{path}: cache array {name!r} is unreadable, a chunk is damaged "
            f"({type(err).__name__}: {err}). "
            "Copy the cache again or rebuild it with `eoid cache-teacher`."
        ) from None


def _settle_other_reads() -> None:
    """Let zarr's other chunk reads of a failed read finish (their results are dropped).

    zarr decodes chunks as concurrent tasks on its own event loop; when one fails the
    others are still pending, and at exit asyncio logs each as "Task was destroyed but
    it is pending".
    """
    import asyncio

    from zarr.core.sync import sync

    async def settle() -> None:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)

    sync(settle())


def _require_shard_files(path: Path, name: str, array: Any) -> None:
    """Refuse an array with a missing shard file (zarr would silently read it as zeros)."""
    rows = array.shape[0]
    step = (array.shards or array.chunks)[0]
    tail = "/0" * (len(array.shape) - 1)
    missing = [
        k
        for k in range(-(-rows // step))
        if not (path / name / "c" / f"{k}{tail}").is_file()
    ]
    if missing:
        raise CacheMismatchError(
            f"{path}: array {name!r} lacks {len(missing)} shard file(s) (rows "
            f"{missing[0] * step}.. are gone, e.g. {name}/c/{missing[0]}{tail}); the "
            "cache is damaged or was copied in part. Copy it again or rebuild it."
        )
