"""The one inference loop: test-time images -> the student -> outputs, and the views
callers need.

Evaluation, prediction, validation during training, pseudo-labelling, V-COCO scoring and
CLIP as the verb classifier all run the student the same way (`model_outputs`); they
differ only in what they do with each batch. Boxes leave this module in original-image
pixels.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from eoid.boxes import cxcywh_to_xyxy
from eoid.config import AugmentConfig, PostprocessConfig
from eoid.errors import ConfigError, DataError
from eoid.loaders import WorkerLoader
from eoid.pipeline.data.images import load_rgb
from eoid.pipeline.data.student_models import model_from_checkpoint
from eoid.pipeline.data.transforms import (
    augment_params,
    augment_test,
    pad_batch,
    resized_size,
)
from eoid.pipeline.data.vocab import Vocabulary
from eoid.pipeline.evaluation.onnx_student import OnnxStudent, require_export_packages
from eoid.pipeline.evaluation.predictions_io import ImageTriplets
from eoid.pipeline.evaluation.speed import StageClock
from eoid.pipeline.evaluation.unseen_recall import RankedPairs
from eoid.student.model import StudentOutput
from eoid.student.postprocess import postprocess, postprocess_kwargs


def open_student(
    checkpoint: str, onnx: str, onnx_provider: str, device: str
) -> tuple[Any, Vocabulary, str]:
    """(the model to call, its vocabulary, the device of its inputs) from a
    checkpoint (torch) or an ONNX file written by `eoid export` (onnxruntime): the
    loop below runs either the same way."""
    if bool(checkpoint) == bool(onnx):
        raise ConfigError(
            "pass one of --checkpoint (the torch student) or --onnx (an `eoid export` "
            "file run by onnxruntime)."
        )
    if onnx:
        require_export_packages("--onnx", ("onnxruntime",))
        student = OnnxStudent(Path(onnx), onnx_provider)
        return student, student.vocabulary(onnx), "cpu"
    model, vocab, _ = model_from_checkpoint(Path(checkpoint), device)
    return model, vocab, device


class EvalDataset(torch.utils.data.Dataset):
    """Test-time images (deterministic resize): (image, original (width, height), key)."""

    def __init__(self, paths: list[Path], keys: list[str], augment: AugmentConfig):
        self.paths, self.keys, self.augment = paths, keys, augment_params(augment)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, tuple[int, int], str]:
        img = load_rgb(self.paths[index], self.keys[index])
        if (
            min(resized_size(*img.size, self.augment.test_size, self.augment.max_size))
            < 1
        ):
            raise DataError(
                f"{self.paths[index]}: image {self.keys[index]!r} is"
                f" {img.size[0]}x{img.size[1]} px; resized for the model (shorter side"
                f" {self.augment.test_size} px, longer at most {self.augment.max_size})"
                " one side would be 0 px. Crop or pad it to a less extreme shape, or"
                " leave it out."
            )
        aug = augment_test(img, np.zeros((0, 4), np.float32), self.augment)
        return aug.image, img.size, self.keys[index]


def collate_eval(
    batch: list[tuple[Tensor, tuple[int, int], str]],
) -> tuple[Tensor, Tensor, list[tuple[int, int]], list[str]]:
    """Pad a batch of test images; sizes and keys stay per image."""
    images, sizes, keys = zip(*batch)
    padded, mask = pad_batch(list(images))
    return padded, mask, list(sizes), list(keys)


@torch.no_grad()
def model_outputs(
    model: Any,
    paths: list[Path],
    keys: list[str],
    augment: AugmentConfig,
    device: str,
    batch_size: int = 2,
    num_workers: int = 0,
    desc: str = "predict",
    progress: bool = True,
    clock: StageClock | None = None,
) -> Iterator[tuple[StudentOutput, list[tuple[int, int]], list[str]]]:
    """(outputs, original (width, height) per image, keys) per batch, the model in eval
    mode.

    `clock`: times each forward (with the copy to the device) as its "student" stage;
    the caller closes each batch (StageClock.end_batch) after its own stages.
    """
    model.eval()
    with WorkerLoader(
        EvalDataset(paths, keys, augment),
        batch_size=batch_size,
        collate_fn=collate_eval,
        num_workers=num_workers,
    ) as loader:
        for images, masks, sizes, batch_keys in tqdm(
            loader, desc=desc, disable=not progress, leave=False
        ):
            with clock.stage("student") if clock else nullcontext():
                outputs = model(images.to(device), masks.to(device))
            yield outputs, sizes, batch_keys


def sizes_hw(sizes_wh: list[tuple[int, int]]) -> Tensor:
    """(B, 2) (height, width) of the original images, as postprocess takes them."""
    return torch.tensor([[h, w] for w, h in sizes_wh])


def query_boxes_px(
    outputs: StudentOutput, sizes_wh: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Every query's (human, object) boxes in original pixels: two (B, Q, 4) float64
    xyxy arrays.
    """
    scale = torch.tensor([[w, h, w, h] for w, h in sizes_wh], dtype=torch.float32)[
        :, None, :
    ]
    human = cxcywh_to_xyxy(outputs.human_boxes_cxcywh.float().cpu()) * scale
    obj = cxcywh_to_xyxy(outputs.object_boxes_cxcywh.float().cpu()) * scale
    return human.numpy().astype(np.float64), obj.numpy().astype(np.float64)


def image_triplets(pred: Any) -> ImageTriplets:
    """One image's post-processed triplets (postprocess output) as float64 arrays."""
    return ImageTriplets(
        pred.human_boxes_xyxy_px.astype(np.float64),
        pred.object_boxes_xyxy_px.astype(np.float64),
        pred.object_classes,
        pred.verbs,
        pred.scores.astype(np.float64),
    )


def predict_images(
    model: Any,
    paths: list[Path],
    keys: list[str],
    vocab: Vocabulary,
    augment: AugmentConfig,
    post: PostprocessConfig,
    device: str,
    batch_size: int = 2,
    progress: bool = True,
    clock: StageClock | None = None,
) -> tuple[dict[str, ImageTriplets], dict[str, RankedPairs] | None]:
    """Post-processed triplets per image key, and every query's pair ranked by
    interactive score.

    `model` is the student or anything called the same way (`OnnxStudent`). The ranked
    pairs are None when the student has no interactive-score head (is_head "none"): no
    U-R@K then. `clock`: times the "student" and "postprocess" stages of each batch.
    """
    valid = torch.from_numpy(vocab.valid)
    triplets: dict[str, ImageTriplets] = {}
    ranked: dict[str, RankedPairs] | None = {}
    for outputs, sizes, batch_keys in model_outputs(
        model, paths, keys, augment, device, batch_size, progress=progress, clock=clock
    ):
        with clock.stage("postprocess") if clock else nullcontext():
            preds = postprocess(
                outputs,
                sizes_hw(sizes),
                valid_object_verb=valid,
                **postprocess_kwargs(post),
            )
            for b, key in enumerate(batch_keys):
                triplets[key] = image_triplets(preds[b])
        if clock:
            clock.end_batch(len(batch_keys))
        if outputs.interactive_logits is None:
            ranked = None
            continue
        # every query's pair in original pixels, for U-R@K (ranked by interactive score)
        human, obj = query_boxes_px(outputs, sizes)
        is_prob = outputs.interactive_prob().float().cpu().numpy()
        for b, key in enumerate(batch_keys):
            ranked[key] = RankedPairs(human[b], obj[b], is_prob[b].astype(np.float64))
    return triplets, ranked


def dense_scores(
    pred: Any, num_queries: int, num_verbs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-query boxes, object class and (Q, V) scores from postprocess output kept in
    full (no NMS).
    """
    scores = np.zeros((num_queries, num_verbs))
    scores[pred.query_idx, pred.verbs] = pred.scores
    human = np.zeros((num_queries, 4))
    obj = np.zeros((num_queries, 4))
    cls = np.full(num_queries, -1, dtype=np.int64)
    human[pred.query_idx] = pred.human_boxes_xyxy_px
    obj[pred.query_idx] = pred.object_boxes_xyxy_px
    cls[pred.query_idx] = pred.object_classes
    return human, obj, cls, scores
