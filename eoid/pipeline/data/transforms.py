"""DETR-style augmentation of (image, boxes) that keeps track of each box's original
identity.

The augmented boxes drive matching and the box losses; the teacher rows were computed on
the original image and boxes, so every augmented box keeps its index into the record's
boxes and the pipeline looks the teacher up in original coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import Tensor
from torchvision.transforms import functional as TF

from eoid.config import AugmentConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentParams:
    """Plain values of the augmentation (built from AugmentConfig by the runner)."""

    enabled: bool
    scales: tuple[int, ...]
    max_size: int
    crop_scales: tuple[int, ...]
    crop_min: int
    crop_max: int
    test_size: int
    color_jitter: float


def augment_params(cfg: AugmentConfig) -> AugmentParams:
    """The augmentation values of an [augment] config section."""
    return AugmentParams(
        cfg.enabled,
        tuple(cfg.scales),
        cfg.max_size,
        tuple(cfg.crop_scales),
        cfg.crop_min,
        cfg.crop_max,
        cfg.test_size,
        cfg.color_jitter,
    )


@dataclass(frozen=True)
class Augmented:
    """An augmented image and its boxes; `box_kept[i]` says box i survived a crop."""

    image: Tensor  # (3, H, W) float32, ImageNet-normalised
    # (num_boxes, 4) float32 in the augmented image's pixels
    boxes_xyxy_px: np.ndarray
    # (num_boxes,) bool: positive area left after crop/clamp
    box_kept: np.ndarray


def resized_size(width: int, height: int, short: int, max_size: int) -> tuple[int, int]:
    """(new_w, new_h): DETR's rule (datasets/transforms.py get_size_with_aspect_ratio),
    exactly.

    The shorter side becomes `short` and the longer one floor(short x aspect ratio),
    unless that passes `max_size`: then the shorter side is round(max_size / aspect
    ratio) first. The rounding can leave the longer side a pixel past max_size (3x7 px,
    short 800, max 1000 -> 429x1001).
    """
    lo, hi = min(width, height), max(width, height)
    if hi / lo * short > max_size:
        short = int(round(max_size * lo / hi))
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def _resize(
    img: Image.Image, boxes: np.ndarray, short: int, max_size: int
) -> tuple[Image.Image, np.ndarray]:
    w, h = img.size
    nw, nh = resized_size(w, h, short, max_size)
    scale = np.array([nw / w, nh / h, nw / w, nh / h], dtype=np.float32)
    return img.resize((nw, nh), Image.BILINEAR), boxes * scale


def _crop(
    img: Image.Image, boxes: np.ndarray, rng: np.random.Generator, lo: int, hi: int
) -> tuple[Image.Image, np.ndarray]:
    w, h = img.size
    cw = int(rng.integers(min(lo, w), min(w, hi) + 1))
    ch = int(rng.integers(min(lo, h), min(h, hi) + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    moved = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
    moved[:, 0::2] = moved[:, 0::2].clip(0, cw)
    moved[:, 1::2] = moved[:, 1::2].clip(0, ch)
    return img.crop((x0, y0, x0 + cw, y0 + ch)), moved


def _jitter(img: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhance(img).enhance(float(rng.uniform(1 - strength, 1 + strength)))
    return img


def to_normalised_tensor(img: Image.Image) -> Tensor:
    """PIL RGB -> (3, H, W) float32 normalised with ImageNet mean/std (the backbone's)."""
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


def augment_train(
    img: Image.Image,
    boxes_xyxy_px: np.ndarray,
    params: AugmentParams,
    rng: np.random.Generator,
) -> Augmented:
    """Flip, colour jitter, then multi-scale resize or resize-crop-resize, as CDN
    trains.

    boxes_xyxy_px: (num_boxes, 4) original pixels. Boxes cut to zero area are flagged,
    not removed, so indices into the record stay valid.
    """
    boxes = np.asarray(boxes_xyxy_px, dtype=np.float32).copy()
    if not params.enabled:
        return augment_test(img, boxes, params)
    w, _ = img.size
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
        boxes = np.stack(
            [w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1
        )
    if params.color_jitter > 0:
        img = _jitter(img, rng, params.color_jitter)
    if rng.random() < 0.5:
        img, boxes = _resize(
            img, boxes, int(rng.choice(params.scales)), params.max_size
        )
    else:
        img, boxes = _resize(
            img, boxes, int(rng.choice(params.crop_scales)), params.max_size
        )
        img, boxes = _crop(img, boxes, rng, params.crop_min, params.crop_max)
        img, boxes = _resize(
            img, boxes, int(rng.choice(params.scales)), params.max_size
        )
    kept = (boxes[:, 2] > boxes[:, 0] + 1e-3) & (boxes[:, 3] > boxes[:, 1] + 1e-3)
    return Augmented(to_normalised_tensor(img), boxes.astype(np.float32), kept)


def augment_test(
    img: Image.Image, boxes_xyxy_px: np.ndarray, params: AugmentParams
) -> Augmented:
    """Deterministic test-time resize (shorter side `test_size`, longer at most
    `max_size`).
    """
    boxes = np.asarray(boxes_xyxy_px, dtype=np.float32).reshape(-1, 4)
    img, boxes = _resize(img, boxes, params.test_size, params.max_size)
    kept = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Augmented(to_normalised_tensor(img), boxes.astype(np.float32), kept)


def pad_batch(images: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Pad (3, H_i, W_i) images to one (B, 3, H, W) tensor; mask (B, H, W) is True on
    padding.
    """
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    batch = images[0].new_zeros(len(images), 3, h, w)
    mask = torch.ones(len(images), h, w, dtype=torch.bool)
    for i, im in enumerate(images):
        batch[i, :, : im.shape[1], : im.shape[2]] = im
        mask[i, : im.shape[1], : im.shape[2]] = False
    return batch, mask


def largest_batch_px(
    params: AugmentParams, batch_size: int, train: bool = True
) -> tuple[int, int]:
    """(height, width) of the largest padded batch the transforms can produce, in
    pixels.

    Every resize puts the shorter side at most at the largest scale (training) or
    `test_size` and the longer one at most at `max_size` (+1 for resized_size's rounding
    at ordinary aspect ratios). A batch pads to the tallest and the widest of its
    images, so one upright and one landscape image make it square: max_size x max_size
    from two images on.
    """
    short = max(params.scales) if (train and params.enabled) else params.test_size
    long = params.max_size + 1
    short = min(short, long)
    return (long, long) if batch_size > 1 else (short, long)
