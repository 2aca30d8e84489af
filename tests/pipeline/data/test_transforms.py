"""Augmentation keeps every box's identity: each box is a solid colour rectangle, so
after a flip, crop or resize the pixel at the centre of augmented box i must still have
box i's colour.

Colour jitter is off (color_jitter=0) so colours survive; the image tensor is
ImageNet-normalised and is un-normalised before its colours are read.
"""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from eoid.pipeline.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentParams,
    augment_test,
    augment_train,
    pad_batch,
    resized_size,
)

W, H = 120, 90
# four disjoint boxes, not mirror images of each other, so a flip is told apart from no
# flip
BOXES = np.array(
    [[5, 5, 45, 40], [60, 10, 110, 35], [10, 50, 50, 85], [70, 45, 100, 80]], np.float32
)
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
PARAMS = AugmentParams(
    enabled=True,
    scales=(48, 64, 80),
    max_size=200,
    crop_scales=(72, 90),
    crop_min=30,
    crop_max=70,
    test_size=72,
    color_jitter=0.0,
)
# crop sides >= the image sides: the random crop is the whole image
NO_CROP = AugmentParams(
    enabled=True,
    scales=(48, 64, 80),
    max_size=200,
    crop_scales=(72, 90),
    crop_min=10_000,
    crop_max=10_000,
    test_size=72,
    color_jitter=0.0,
)
SEEDS = range(16)
# boxes this small or smaller are left out of the colour check (bilinear edges blur)
MIN_SIDE_PX = 8


def scene():
    img = Image.new("RGB", (W, H), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for (x1, y1, x2, y2), colour in zip(BOXES.astype(int).tolist(), COLOURS):
        # fills the pixels of [x1, x2) x [y1, y2)
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=colour)
    return img


def rgb(image):
    """(3, H, W) normalised tensor -> (H, W, 3) floats in [0, 1]."""
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None],
    )
    return (image * std + mean).permute(1, 2, 0).numpy()


def boxes_with_their_colour(out, where=""):
    """Indices of the kept, not too small boxes, after asserting each one's centre pixel
    has its colour.
    """
    pixels, checked = rgb(out.image), []
    for i, (x1, y1, x2, y2) in enumerate(out.boxes_xyxy_px.tolist()):
        if not out.box_kept[i] or x2 - x1 <= MIN_SIDE_PX or y2 - y1 <= MIN_SIDE_PX:
            continue
        centre = pixels[int((y1 + y2) / 2), int((x1 + x2) / 2)]
        np.testing.assert_allclose(
            centre,
            np.array(COLOURS[i]) / 255,
            atol=0.02,
            err_msg=f"{where}box {i} at {[x1, y1, x2, y2]} lost its colour",
        )
        checked.append(i)
    return checked


def assert_boxes_inside(out):
    _, h, w = out.image.shape
    b = out.boxes_xyxy_px
    assert (b[:, 0] >= -1e-3).all() and (b[:, 1] >= -1e-3).all()
    assert (b[:, 2] <= w + 1e-3).all() and (b[:, 3] <= h + 1e-3).all()


# ---- augment_train ----


def test_every_kept_box_keeps_its_identity_through_flips_and_crops():
    checked = [0] * len(BOXES)
    crops = 0
    for seed in SEEDS:
        out = augment_train(scene(), BOXES, PARAMS, np.random.default_rng(seed))
        # no box is removed: indices stay valid
        assert out.boxes_xyxy_px.shape == BOXES.shape
        assert_boxes_inside(out)
        for i in boxes_with_their_colour(out, f"seed {seed}: "):
            checked[i] += 1
        _, h, w = out.image.shape
        crops += abs(w / h - W / H) > 0.05  # only a crop changes the aspect ratio
    assert min(checked) > 0, "every box must be checked at least once over the seeds"
    assert crops > 0, "the seeds must exercise the crop path"


def test_box_kept_flags_exactly_the_boxes_left_with_positive_area():
    for seed in SEEDS:
        out = augment_train(scene(), BOXES, PARAMS, np.random.default_rng(seed))
        b = out.boxes_xyxy_px
        assert (
            out.box_kept.tolist()
            == ((b[:, 2] - b[:, 0] > 1e-3) & (b[:, 3] - b[:, 1] > 1e-3)).tolist()
        )


def test_without_crop_each_box_maps_back_to_its_original_through_the_flip_and_scale():
    # Crop side >= image side: the crop is the whole image, so the transform is an
    # optional horizontal flip and a resize by (w'/W, h'/H). Undoing it must give box i
    # back for every i, under exactly one of the two flip hypotheses.
    flips = 0
    for seed in SEEDS:
        out = augment_train(scene(), BOXES, NO_CROP, np.random.default_rng(seed))
        _, h, w = out.image.shape
        b = out.boxes_xyxy_px.astype(np.float64) / np.array(
            [w / W, h / H, w / W, h / H]
        )
        unflipped = np.stack([W - b[:, 2], b[:, 1], W - b[:, 0], b[:, 3]], axis=1)
        straight = np.allclose(b, BOXES, atol=1e-3)
        flipped = np.allclose(unflipped, BOXES, atol=1e-3)
        assert straight != flipped, (
            f"seed {seed}: boxes {out.boxes_xyxy_px.tolist()} are not a flip+resize"
        )
        assert out.box_kept.all()
        assert boxes_with_their_colour(out) == [0, 1, 2, 3]
        flips += flipped
    assert 0 < flips < len(SEEDS), "the seeds must exercise both flip and no flip"


def test_the_same_seed_gives_the_same_augmentation():
    a = augment_train(scene(), BOXES, PARAMS, np.random.default_rng(7))
    b = augment_train(scene(), BOXES, PARAMS, np.random.default_rng(7))
    assert torch.equal(a.image, b.image)
    assert np.array_equal(a.boxes_xyxy_px, b.boxes_xyxy_px) and np.array_equal(
        a.box_kept, b.box_kept
    )


def test_augment_train_does_not_modify_the_callers_boxes():
    boxes = BOXES.copy()
    for seed in SEEDS:
        augment_train(scene(), boxes, PARAMS, np.random.default_rng(seed))
    assert np.array_equal(boxes, BOXES)


def test_disabled_augmentation_is_the_test_resize():
    off = AugmentParams(**{**PARAMS.__dict__, "enabled": False})
    a = augment_train(scene(), BOXES, off, np.random.default_rng(0))
    b = augment_test(scene(), BOXES, off)
    assert torch.equal(a.image, b.image) and np.array_equal(
        a.boxes_xyxy_px, b.boxes_xyxy_px
    )


# ---- augment_test: a resize only ----


def test_augment_test_only_resizes_to_the_test_size():
    # 120 x 90, test_size 72: shorter side 90 -> 72 (factor 0.8), longer 120 -> 96 <
    # max_size 200
    out = augment_test(scene(), BOXES, PARAMS)
    assert tuple(out.image.shape) == (3, 72, 96)
    np.testing.assert_allclose(out.boxes_xyxy_px, BOXES * 0.8, rtol=1e-6)
    # no flip, no crop
    assert out.box_kept.all() and boxes_with_their_colour(out) == [0, 1, 2, 3]


def test_augment_test_caps_the_longer_side_at_max_size():
    # test_size 72 would make the longer side 96 > max_size 80: the longer side becomes
    # 80 (factor 2/3) and the shorter round(80 * 90 / 120) = 60, the same factor on both
    # axes.
    capped = AugmentParams(**{**PARAMS.__dict__, "max_size": 80})
    out = augment_test(scene(), BOXES, capped)
    assert tuple(out.image.shape) == (3, 60, 80)
    np.testing.assert_allclose(out.boxes_xyxy_px, BOXES * (2 / 3), rtol=1e-6)
    assert boxes_with_their_colour(out) == [0, 1, 2, 3]


def test_augment_test_accepts_an_image_without_boxes():
    out = augment_test(scene(), np.zeros((0, 4), np.float32), PARAMS)
    assert out.boxes_xyxy_px.shape == (0, 4) and out.box_kept.shape == (0,)


@settings(max_examples=80, deadline=None)
@given(st.integers(8, 400), st.integers(8, 400), st.integers(8, 120))
def test_resized_size_keeps_the_shorter_side_and_floors_the_longer_one_when_not_capped(
    w, h, short
):
    nw, nh = resized_size(w, h, short, max_size=10_000)  # cap never reached
    lo, hi = min(w, h), max(w, h)
    new_lo, new_hi = (nw, nh) if w <= h else (nh, nw)
    assert new_lo == short
    # new_hi = floor(short * hi / lo): same aspect
    assert new_hi * lo <= short * hi < (new_hi + 1) * lo


def detr_resized_size(
    width: int, height: int, short: int, max_size: int
) -> tuple[int, int]:
    """DETR's resize rule (datasets/transforms.py, get_size_with_aspect_ratio),
    restated.

    If the longer side would pass max_size at `short`, the shorter side becomes max_size
    times the aspect ratio, rounded; an image whose shorter side already has that length
    keeps its size; otherwise the longer side is the shorter one times the aspect ratio,
    floored. Returns (new_w, new_h).
    """
    lo, hi = float(min(width, height)), float(max(width, height))
    if hi / lo * short > max_size:
        short = int(round(max_size * lo / hi))
    if min(width, height) == short:
        return width, height
    if width < height:
        return short, int(short * height / width)
    return int(short * width / height), short


@settings(max_examples=300, deadline=None)
@given(
    st.integers(8, 2000),
    st.integers(8, 2000),
    st.integers(8, 800),
    st.integers(8, 1333),
)
def test_resized_size_is_detrs_rule(w, h, short, max_size):
    assert resized_size(w, h, short, max_size) == detr_resized_size(
        w, h, short, max_size
    )


def test_the_capped_longer_side_may_pass_max_size_by_a_pixel_as_in_detr():
    # max_size * lo / hi = 1000 * 3 / 7 = 428.57 -> round -> 429, and int(429 * 7 / 3) =
    # 1001
    assert (
        resized_size(300, 700, 800, 1000)
        == detr_resized_size(300, 700, 800, 1000)
        == (429, 1001)
    )


# ---- pad_batch ----


def test_pad_batch_pads_to_the_largest_size_with_a_mask_true_on_padding():
    a = torch.full((3, 2, 3), 1.0)  # 2 rows x 3 columns
    b = torch.full((3, 4, 1), 2.0)  # 4 rows x 1 column
    batch, mask = pad_batch([a, b])
    assert tuple(batch.shape) == (2, 3, 4, 3) and tuple(mask.shape) == (2, 4, 3)
    assert mask.dtype == torch.bool
    # image 0 fills rows 0-1, columns 0-2; image 1 fills rows 0-3, column 0
    assert mask[0].tolist() == [[False] * 3, [False] * 3, [True] * 3, [True] * 3]
    assert mask[1].tolist() == [[False, True, True]] * 4
    assert torch.equal(batch[0, :, :2, :3], a) and torch.equal(batch[1, :, :4, :1], b)
    # padding is zero
    assert (batch[0, :, 2:] == 0).all() and (batch[1, :, :, 1:] == 0).all()
