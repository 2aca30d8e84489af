"""`eoid predict`: file names that `eoid evaluate --predictions` finds, bad images
refused up front.
"""

from __future__ import annotations

import pytest
from PIL import Image

from eoid.config import PredictConfig, VerbsConfig
from eoid.devices import World
from eoid.errors import ConfigError, DataError
from eoid.pipeline.run_predict import expand_folders, prediction_names, run_predict


def test_images_of_one_folder_are_named_by_their_bare_file_names(tmp_path):
    images = [
        tmp_path / "test2015" / "HICO_test2015_00000001.jpg",
        tmp_path / "test2015" / "b.jpg",
    ]
    assert prediction_names(images) == ["HICO_test2015_00000001.jpg", "b.jpg"]


def test_images_of_several_folders_keep_the_folders_below_the_common_one(tmp_path):
    # as a mixed training set names them (eoid mix: src0/..., src1/...)
    images = [
        tmp_path / "images" / "src0" / "a.jpg",
        tmp_path / "images" / "src1" / "a.jpg",
    ]
    assert prediction_names(images) == ["src0/a.jpg", "src1/a.jpg"]


def test_unreadable_images_are_refused_before_the_model_loads_without_suggesting_skip_bad(
    tmp_path,
):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (8, 8)).save(good)
    bad.write_bytes(b"not a png")
    cfg = PredictConfig(
        checkpoint=str(tmp_path / "no_such_checkpoint.pt"), out=str(tmp_path / "out")
    )
    with pytest.raises(DataError, match=r"cannot read 1 image\(s\): .*bad\.png") as err:
        run_predict(cfg, [good, bad], World())
    assert "--skip-bad" not in str(err.value) and "leave them out" in str(err.value)


def test_the_same_image_twice_is_refused(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    cfg = PredictConfig(checkpoint=str(tmp_path / "c.pt"), out=str(tmp_path / "out"))
    with pytest.raises(DataError, match="given twice: a.png"):
        run_predict(cfg, [image, image], World())


def test_a_folder_stands_for_its_image_files_sorted_and_not_its_subfolders(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.JPG", "a.png", "notes.txt", "sub/c.png"):
        (folder / name).write_bytes(b"")
    single = tmp_path / "z.jpg"
    assert expand_folders([folder, single]) == [
        folder / "a.png",
        folder / "b.JPG",
        single,
    ]


def test_a_folder_without_images_is_refused_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: a folder without image files"):
        run_predict(
            PredictConfig(checkpoint=str(tmp_path / "c.pt"), out=str(tmp_path / "out")),
            [tmp_path / "empty"],
            World(),
        )


def test_clip_or_blended_verbs_without_a_teacher_are_refused_before_anything_runs(
    tmp_path,
):
    cfg = PredictConfig(
        checkpoint=str(tmp_path / "c.pt"),
        out=str(tmp_path / "out"),
        verbs=VerbsConfig(classifier="blend"),
    )
    with pytest.raises(ConfigError, match="--clip MODEL --clip-weights WEIGHTS"):
        run_predict(cfg, [tmp_path / "a.png"], World())
    assert not (tmp_path / "out").exists()
