"""Box formats, union boxes and pair IoU: the leaf every floor uses.

Frames: `_px` boxes are in pixels of the image named in the docstring (original
annotation coordinates unless said otherwise); `_norm` boxes are divided by the image
width and height. `xyxy` = (x1, y1, x2, y2), `cxcywh` = (centre x, centre y, width,
height).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou, generalized_box_iou

__all__ = [
    "box_iou",
    "generalized_box_iou",
    "cxcywh_to_xyxy",
    "xyxy_to_cxcywh",
    "union_boxes",
    "pair_iou",
    "box_iou_np",
    "pair_iou_np",
    "box_iou_plus1_np",
]


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) cxcywh -> (..., 4) xyxy, same frame."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (..., 4) cxcywh, same frame."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def union_boxes(human_xyxy: Tensor, object_xyxy: Tensor) -> Tensor:
    """Smallest box holding each human-object pair: (N, 4) xyxy, same frame as the
    inputs.
    """
    return torch.cat(
        [
            torch.minimum(human_xyxy[:, :2], object_xyxy[:, :2]),
            torch.maximum(human_xyxy[:, 2:], object_xyxy[:, 2:]),
        ],
        dim=1,
    )


def pair_iou(h1: Tensor, o1: Tensor, h2: Tensor, o2: Tensor) -> Tensor:
    """IoU of human-object pairs: min(IoU of the humans, IoU of the objects).

    h1, o1: (N, 4), h2, o2: (M, 4), xyxy in one frame. Returns (N, M) in [0, 1].
    """
    return torch.minimum(box_iou(h1, h2), box_iou(o1, o2))


def box_iou_np(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Plain (continuous) IoU between two box sets: (N, 4), (M, 4) -> (N, M) float64."""
    a = np.asarray(a_xyxy, dtype=np.float64)[:, None, :]
    b = np.asarray(b_xyxy, dtype=np.float64)[None, :, :]
    iw = np.clip(
        np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None
    )
    ih = np.clip(
        np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None
    )
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_iou_plus1_np(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """IoU in the inclusive-pixel convention of the official HICO-DET MATLAB code (+1 on
    sides).

    (N, 4), (M, 4) xyxy pixels -> (N, M) float64.
    """
    a = np.asarray(a_xyxy, dtype=np.float64)[:, None, :]
    b = np.asarray(b_xyxy, dtype=np.float64)[None, :, :]
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)


def pair_iou_np(
    h1: np.ndarray, o1: np.ndarray, h2: np.ndarray, o2: np.ndarray
) -> np.ndarray:
    """min(IoU humans, IoU objects) for pairs: (N, 4) x4 -> (N, M) float64, plain IoU."""
    return np.minimum(box_iou_np(h1, h2), box_iou_np(o1, o2))
