"""Union crops for the teacher: cut from the original image, padded square with black,
resized.

As in the original EoID code: the union of the human and object boxes, in original pixel
coordinates, cut with PIL (area outside the image comes out black), padded to a square
with black and the crop centred, then CLIP's own transform (bicubic resize to the
model's input size, normalise with the model's mean and std).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class CropSpec:
    """How a union crop becomes the teacher's input: recorded in the cache fingerprint."""

    # model input side, px (384 for RN50x16, 224 for RN50)
    size: int
    mean: tuple[float, float, float]  # per-channel mean the model was trained with
    std: tuple[float, float, float]  # per-channel std
    interpolation: str = "bicubic"  # resize filter, as CLIP's transform
    padding: str = "square-black-centred"

    def to_json(self) -> dict:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
        }


def union_boxes_np(human_xyxy: np.ndarray, object_xyxy: np.ndarray) -> np.ndarray:
    """Smallest box holding each pair: (N, 4) xyxy, same frame as the inputs."""
    h = np.asarray(human_xyxy, dtype=np.float64).reshape(-1, 4)
    o = np.asarray(object_xyxy, dtype=np.float64).reshape(-1, 4)
    return np.concatenate(
        [np.minimum(h[:, :2], o[:, :2]), np.maximum(h[:, 2:], o[:, 2:])], axis=1
    )


def crop_region(image: Image.Image, box_xyxy_px: np.ndarray) -> Image.Image:
    """The box cut from `image` (corners rounded to whole pixels, at least 1 px; outside
    = black).
    """
    x1, y1, x2, y2 = (int(round(float(v))) for v in box_xyxy_px)
    return image.crop((x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))


def pad_to_square(region: Image.Image) -> Image.Image:
    """Pad the short side with black so the region sits centred in a square (EoID's
    expand2square).
    """
    width, height = region.size
    if width == height:
        return region
    side = max(width, height)
    square = Image.new(region.mode, (side, side), (0, 0, 0))
    square.paste(region, ((side - width) // 2, (side - height) // 2))
    return square


def to_model_input(square: Image.Image, spec: CropSpec) -> Tensor:
    """A square RGB image -> (3, size, size) float32, resized and normalised as the
    model expects.
    """
    resized = square.resize((spec.size, spec.size), _RESAMPLE[spec.interpolation])
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(spec.mean, np.float32)) / np.asarray(
        spec.std, np.float32
    )
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def union_crops(
    image: Image.Image,
    human_xyxy_px: np.ndarray,
    object_xyxy_px: np.ndarray,
    spec: CropSpec,
) -> Tensor:
    """Teacher inputs for the pairs of one image: (N, 3, size, size) float32.

    image: the original RGB image; boxes (N, 4) xyxy in its pixel coordinates.
    """
    image = image.convert("RGB") if image.mode != "RGB" else image
    unions = union_boxes_np(human_xyxy_px, object_xyxy_px)
    if len(unions) == 0:
        return torch.zeros((0, 3, spec.size, spec.size), dtype=torch.float32)
    return torch.stack(
        [to_model_input(pad_to_square(crop_region(image, u)), spec) for u in unions]
    )
