"""End to end on the CPU: the tiny student memorises one synthetic image (boxes, class,
verbs).
"""

import numpy as np
import pytest
import torch

from eoid.boxes import box_iou, cxcywh_to_xyxy
from eoid.config import LossConfig
from eoid.student.loss_terms import LossParams, loss_weights
from eoid.student.losses import compute_losses, weighted_sum
from eoid.student.model import build_student
from eoid.student.postprocess import postprocess
from eoid.student.targets import PairTargets

NUM_OBJECTS, NUM_VERBS, SIZE = 3, 4, 96


def _scene() -> tuple[torch.Tensor, PairTargets]:
    """A bright 'person' bar and a dark 'ball' square; the pair does verbs 0 and 2
    and the teacher says 0.7 for verb 3 (the only verb it may fill)."""
    image = torch.zeros(1, 3, SIZE, SIZE)
    image[:, :, 20:80, 10:35] = 1.0
    image[:, 0, 50:70, 55:75] = -1.0
    human = torch.tensor([[22.5 / SIZE, 50 / SIZE, 25 / SIZE, 60 / SIZE]])
    obj = torch.tensor([[65 / SIZE, 60 / SIZE, 20 / SIZE, 20 / SIZE]])
    verbs = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    teacher = torch.tensor([[0.1, 0.1, 0.1, 0.7]])
    one = torch.ones(1, dtype=torch.bool)
    return image, PairTargets(
        human, obj, torch.tensor([2]), verbs, one, one, teacher, one
    )


@pytest.fixture
def one_thread():
    # on the shared 2-core machine one intra-op thread is ~10x faster for this tiny
    # model
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tiny_student_overfits_one_image_within_a_few_hundred_steps(one_thread):
    torch.manual_seed(0)
    image, target = _scene()
    mask = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    model = build_student("tiny", NUM_OBJECTS, NUM_VERBS, num_queries=8)
    optim = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3, foreach=True
    )
    weights = loss_weights(LossConfig(distill_norm="pairs", distill=1.0))
    distill_mask = torch.tensor([False, False, False, True])
    for _ in range(200):
        terms, _ = compute_losses(
            model(image, mask),
            [target],
            distill_mask,
            loss=LossParams(distill_norm="pairs"),
        )
        optim.zero_grad()
        weighted_sum(terms, weights).backward()
        optim.step()
    model.eval()
    with torch.no_grad():
        out = model(image, mask)
    _, stats = compute_losses(
        out, [target], distill_mask, loss=LossParams(distill_norm="pairs")
    )
    # the query the matcher picks has learned the pair
    q = out.object_logits[0, :, 2].argmax()
    iou_h = box_iou(
        cxcywh_to_xyxy(out.human_boxes_cxcywh[0, q][None]),
        cxcywh_to_xyxy(target.human_boxes_cxcywh),
    )
    iou_o = box_iou(
        cxcywh_to_xyxy(out.object_boxes_cxcywh[0, q][None]),
        cxcywh_to_xyxy(target.object_boxes_cxcywh),
    )
    assert iou_h.item() > 0.8 and iou_o.item() > 0.8
    verb_prob = out.verb_logits[0, q].sigmoid()
    assert verb_prob[0] > 0.8 and verb_prob[2] > 0.8 and verb_prob[1] < 0.2
    assert abs(verb_prob[3].item() - 0.7) < 0.15  # the distilled soft target
    # and post-processing reports it first, in pixels
    (pred,) = postprocess(out, torch.tensor([[SIZE, SIZE]]), use_nms=True)
    assert pred.object_classes[0] == 2 and pred.verbs[0] in (0, 2)
    assert np.allclose(pred.human_boxes_xyxy_px[0], [10, 20, 35, 80], atol=4)
