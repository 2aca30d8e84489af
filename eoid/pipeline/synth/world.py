"""The built-in synthetic HOI world: generated images in HICO-DET's JSON format, with a
vocabulary.

`generate_world(out, num_images, seed)` writes

    out/images/{train,test}_NNNNNN.png      one image folder for both splits
    out/train.json, out/test.json           PPDM/CDN HICO-DET format
                                            (file_name, annotations, hoi_annotation)
    out/vocabulary.json                     eoid's vocabulary format (see pipeline/data/vocab.py)

Each image holds 1-3 drawn people, each with one object it interacts with through one
verb (the visible rules are in pipeline/synth/draw.py), and sometimes a loose object
nobody touches, so that cross pairs are left unlabelled as in HICO-DET. Verbs are named
like HICO-DET's and several verbs share each object, so the object class alone never
tells the verb. Zero-shot settings: `ua` hides two verbs (kind "verb"), `uc` four
verb-object combinations whose verbs stay seen with other objects (kind "hoi"). The same
seed gives the same bytes. scenes.py draws the images and holds the vocabulary,
layouts.py the layouts; this module writes them as a dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from eoid.errors import ConfigError
from eoid.files import output_folder, write_text_atomic, writing
from eoid.pipeline.data.vocab import Vocabulary, vocabulary_from_json
from eoid.pipeline.synth.layouts import FREE, SceneLayout
from eoid.pipeline.synth.scenes import Scene, sample_scenes, synth_vocabulary_json


@dataclass(frozen=True)
class WorldPaths:
    """Where generate_world wrote the world."""

    root: Path
    image_dir: Path  # images of both splits
    train_json: Path
    test_json: Path
    vocabulary: Path
    num_train: int = 0  # images in train.json
    num_test: int = 0  # images in test.json

    def describe(self) -> str:
        """What was written, as `eoid synth` prints it."""
        return "\n".join(
            [
                (
                    f"synthetic world in {self.root}: {self.num_train} training and "
                    f"{self.num_test} test images in {self.image_dir}"
                ),
                f"  annotations: {self.train_json}, {self.test_json}",
                f"  vocabulary:  {self.vocabulary} (pass it as --dataset)",
            ]
        )


def scene_to_record_json(scene: Scene, file_name: str, vocab: Vocabulary) -> dict:
    """One image entry of the PPDM/CDN HICO-DET JSON (category ids as the vocabulary
    gives them).
    """
    hoi_index = vocab.hoi_index()
    return {
        "file_name": file_name,
        "annotations": [
            {"bbox": [int(v) for v in box], "category_id": vocab.object_ids[int(c)]}
            for box, c in zip(scene.boxes_xyxy_px, scene.box_classes)
        ],
        "hoi_annotation": [
            {
                "subject_id": int(h),
                "object_id": int(o),
                "category_id": vocab.verb_ids[int(v)],
                "hoi_category_id": int(hoi_index[v, scene.box_classes[o]]) + 1,
            }
            for h, o, v in scene.hois
        ],
    }


def _made_before_markers(out_dir: Path, vocab_json: dict) -> tuple[str, ...]:
    """("vocabulary.json",) when `out_dir` is a world an older eoid wrote (its
    vocabulary, byte for byte, and no owner marker yet): a quickstart folder of that
    eoid resumes; else ()."""
    try:
        same = (out_dir / "vocabulary.json").read_text() == json.dumps(
            vocab_json, indent=1
        )
    except (OSError, UnicodeDecodeError):
        same = False
    return ("vocabulary.json",) if same else ()


def generate_world(
    out_dir: Path,
    num_images: int,
    seed: int,
    *,
    image_size: int = 160,
    test_fraction: float = 0.3,
    progress: bool = True,
    layout: SceneLayout = FREE,
) -> WorldPaths:
    """Write a world of `num_images` images (a `test_fraction` of them in the test
    split) to `out_dir`.

    `layout`: FREE (default, the teacher's world) or QUICKSTART (people in columns, see
    SceneLayout).
    """
    if num_images < 2 or not 0.0 < test_fraction < 1.0 or image_size < 96:
        raise ConfigError(
            f"synthetic world: need num_images >= 2 (got {num_images}), 0 <"
            f" test_fraction < 1 (got {test_fraction}) and image_size >= 96 px (got"
            f" {image_size})."
        )
    vocab_json = synth_vocabulary_json()
    out_dir = output_folder(
        Path(out_dir),
        "the synthetic world",
        owner="synth",
        signs=_made_before_markers(Path(out_dir), vocab_json),
    )
    image_dir = output_folder(out_dir / "images", "the synthetic world's images")
    vocab = vocabulary_from_json(vocab_json, "the synthetic world's vocabulary")
    num_test = min(num_images - 1, max(1, round(num_images * test_fraction)))
    paths = WorldPaths(
        out_dir,
        image_dir,
        out_dir / "train.json",
        out_dir / "test.json",
        out_dir / "vocabulary.json",
        num_images - num_test,
        num_test,
    )
    bar = tqdm(total=num_images, desc="synth world", unit="img", disable=not progress)
    for split, count, path in (
        ("train", num_images - num_test, paths.train_json),
        ("test", num_test, paths.test_json),
    ):
        entries = []
        for i, scene in enumerate(
            sample_scenes(count, seed, split, image_size, layout)
        ):
            name = f"{split}_{i:06d}.png"
            with writing(image_dir / name, "an image of the world"):
                Image.fromarray(scene.image).save(image_dir / name, format="PNG")
            entries.append(scene_to_record_json(scene, name, vocab))
            bar.update(1)
        write_text_atomic(path, json.dumps(entries), "the annotation file")
    bar.close()
    write_text_atomic(
        paths.vocabulary, json.dumps(vocab_json, indent=1), "the vocabulary"
    )
    return paths
