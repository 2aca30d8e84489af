"""Reading images: every decode of a user's image goes through here, so a bad file is
one clear error.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from eoid.errors import DataError


def load_rgb(path: Path, key: str) -> Image.Image:
    """Decode an image as RGB; a missing or corrupt file is a DataError naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(
            f"{path}: cannot read image of record {key!r} ({err}). Restore or replace"
            " the file; `eoid data check` lists every unreadable image, and train and"
            " cache-teacher can skip them with --skip-bad."
        ) from None


def unreadable_images(paths: list[Path]) -> list[str]:
    """'path (why)' for each image that does not decode, so a command can refuse before
    it starts.
    """
    problems = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            problems.append(f"{path} ({err})")
    return problems
