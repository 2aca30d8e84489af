"""Memory before training: the largest batch the transforms make, the device's free
memory, and a recipe that cannot fit refused in one line before anything is written."""

from pathlib import Path

import pytest

from eoid.config import AugmentConfig, TrainConfig
from eoid.config_loading import load_config
from eoid.pipeline.data.transforms import augment_params, largest_batch_px, resized_size
from eoid.pipeline.training import memory
from eoid.pipeline.training.memory import OutOfMemory, available_bytes, require_memory

# the HICO-DET recipes' sizes: scales up to 800, max_size 1333, test 800
HICO = AugmentConfig()


def test_the_largest_batch_is_max_size_square_from_two_images_on():
    # one image: shorter side at most 800, longer at most 1333 (+1 for rounding); two
    # images, one upright and one landscape, pad to 1334 x 1334
    params = augment_params(HICO)
    assert largest_batch_px(params, 1) == (800, 1334)
    assert largest_batch_px(params, 4) == (1334, 1334)
    assert largest_batch_px(params, 1, train=False) == (800, 1334)
    # the bound holds for the real resize rule at ordinary aspect ratios
    for w, h in [(640, 480), (480, 640), (1000, 300), (333, 500)]:
        for short in HICO.scales:
            assert max(resized_size(w, h, short, HICO.max_size)) <= 1334
            assert min(resized_size(w, h, short, HICO.max_size)) <= 800


def test_cpu_free_memory_is_positive_and_below_the_machines_total():
    total = (
        int(
            next(
                x
                for x in Path("/proc/meminfo").read_text().splitlines()
                if x.startswith("MemTotal:")
            ).split()[1]
        )
        * 1024
    )
    assert 0 < available_bytes("cpu") <= total


def _tiny_at_hico_sizes(*extra: str) -> TrainConfig:
    return load_config(
        TrainConfig,
        None,
        ("student.preset=tiny", "student.dropout=0.1", "optim.batch_size=4", *extra),
    )


def test_tiny_at_hico_sizes_is_refused_naming_preset_size_batch_estimate_memory_and_keys():
    with pytest.raises(OutOfMemory) as err:
        require_memory(_tiny_at_hico_sizes(), "cpu", available=20 * 10**9)
    message = str(err.value)
    assert "\n" not in message
    for part in (
        "'tiny'",
        "1334x1334 px",
        "optim.batch_size 4",
        "free",
        "20.0 GB",
        "augment.max_size",
        "student.preset",
        "student.dropout",
    ):
        assert part in message, part
    # 4 images * 4 heads * (167 * 167 tokens)^2 * 17 bytes (see
    # tests/student/test_memory.py)
    assert f"{4 * 4 * (167 * 167) ** 2 * 17 / 1e9:.1f} GB" in message


@pytest.mark.parametrize(
    "changes",
    [
        ("augment.max_size=320", "augment.scales=[288,320]"),
        # 800 x 1334 px: 19.0 GB
        ("optim.batch_size=1",),
        ("student.dropout=0",),
        ("student.preset=cdn-s",),
    ],
)
def test_each_key_the_message_names_can_make_the_recipe_fit(changes):
    assert (
        require_memory(_tiny_at_hico_sizes(*changes), "cpu", available=20 * 10**9)
        < 20 * 10**9
    )


def test_run_train_refuses_before_the_run_folder_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 4 * 10**9)
    out = tmp_path / "run"
    cfg = load_config(
        TrainConfig,
        None,
        ("student.preset=tiny", "student.dropout=0.1"),
        out=str(out),
        data__train_annotations=str(tmp_path / "missing.json"),
    )
    from eoid.devices import World
    from eoid.pipeline.run_train import run_train

    with pytest.raises(OutOfMemory):
        run_train(cfg, World())
    assert not out.exists()
