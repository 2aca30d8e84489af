import numpy as np
import torch
from PIL import Image

from eoid.teacher_cache.crops import (
    CropSpec,
    crop_region,
    pad_to_square,
    union_boxes_np,
    union_crops,
)

SPEC = CropSpec(size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_union_box_is_the_smallest_box_holding_both():
    u = union_boxes_np(np.array([[10, 20, 30, 40]]), np.array([[25, 5, 50, 35]]))
    assert u.tolist() == [[10, 5, 50, 40]]


def test_a_wide_region_is_padded_top_and_bottom_with_black_and_centred():
    region = Image.new("RGB", (8, 4), (255, 255, 255))
    square = np.asarray(pad_to_square(region))
    assert square.shape == (8, 8, 3)
    # (8 - 4) // 2 = 2 black rows above and 2 below the white band
    assert (
        (square[:2] == 0).all()
        and (square[6:] == 0).all()
        and (square[2:6] == 255).all()
    )


def test_a_tall_region_is_padded_left_and_right():
    square = np.asarray(pad_to_square(Image.new("RGB", (3, 8), (255, 255, 255))))
    # (8 - 3) // 2 = 2 columns left, 3 right
    assert (
        (square[:, :2] == 0).all()
        and (square[:, 2:5] == 255).all()
        and (square[:, 5:] == 0).all()
    )


def test_crop_outside_the_image_is_black():
    image = Image.new("RGB", (10, 10), (255, 255, 255))
    region = np.asarray(crop_region(image, np.array([5, 5, 15, 15])))
    assert (
        (region[:5, :5] == 255).all()
        and (region[5:, :] == 0).all()
        and (region[:, 5:] == 0).all()
    )


def test_crops_match_open_clips_own_transform_on_the_padded_square():
    import open_clip

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    h, o = np.array([[2.0, 3.0, 20.0, 30.0]]), np.array([[15.0, 10.0, 50.0, 25.0]])
    spec = CropSpec(
        size=24,
        mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711),
    )
    ours = union_crops(image, h, o, spec)[0]
    square = pad_to_square(image.crop((2, 3, 50, 30)))
    theirs = open_clip.image_transform(
        24, is_train=False, mean=spec.mean, std=spec.std, interpolation="bicubic"
    )(square)
    assert ours.shape == (3, 24, 24)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_union_crops_of_n_pairs_is_a_batch_of_n():
    image = Image.new("L", (30, 30), 128)  # grayscale input is converted to RGB
    out = union_crops(
        image,
        np.zeros((3, 4)) + [0, 0, 5, 5],
        np.zeros((3, 4)) + [10, 10, 20, 20],
        SPEC,
    )
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32
