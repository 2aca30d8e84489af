"""The image files that annotation records name: whether a record's `file_name` can
safely name a file inside the image folder (a lexical check: no absolute path, `..`,
backslash or NUL), and each image's (width, height) read from its header (or from a full
decode, which finds truncated files), one at a time or many ahead in threads. checks.py
applies them to every record; readers.py reads the sizes ahead.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, Iterable


def file_name_problem(file_name: Any) -> str | None:
    """Why `file_name` cannot name a file inside the image folder, or None if it can."""
    if not isinstance(file_name, str) or not file_name.strip():
        return f"file_name {file_name!r} is not a non-empty string"
    if "\\" in file_name or "\x00" in file_name:
        return f"file_name {file_name!r} contains a backslash or NUL"
    pure = PurePosixPath(file_name)
    if pure.is_absolute() or (len(file_name) > 1 and file_name[1] == ":"):
        return (
            f"file_name {file_name!r} is an absolute path and would escape the image"
            " folder"
        )
    if ".." in pure.parts:
        return (
            f"file_name {file_name!r} contains '..' and would escape the image folder"
        )
    return None


def image_size(path: Path, decode: bool = False) -> tuple[int, int]:
    """(width, height) from the image header; `decode` also decodes every pixel (finds
    truncation).
    """
    from PIL import Image

    with Image.open(path) as img:
        if decode:
            img.load()
        return int(img.width), int(img.height)


def _size_or_error(path: Path, decode: bool) -> tuple[int, int] | Exception:
    try:
        return image_size(path, decode)
    # PIL raises many types for broken files; check_raw_image reports it
    except Exception as err:
        return err


def image_sizes(
    paths: Iterable[Path], decode: bool = False, threads: int = 8
) -> dict[Path, tuple[int, int] | Exception]:
    """image_size of many files, each (width, height) or the exception it raised.

    Threads, because opening a header mostly waits on the file system (and PIL decodes
    without the GIL): 8 threads read the headers of 38k HICO-DET-sized JPEGs ~3x faster
    than one on 2 cores, the largest part of `eoid train`'s start-up there (issue 25).
    """
    paths = list(dict.fromkeys(paths))
    with ThreadPoolExecutor(threads) as pool:
        return dict(zip(paths, pool.map(lambda p: _size_or_error(p, decode), paths)))
