"""CDN post-processing and triplet NMS on hand-built cases."""

import math

import numpy as np
import torch

from eoid.config import PostprocessConfig
from eoid.student.model import StudentOutput
from eoid.student.postprocess import postprocess, postprocess_kwargs, triplet_nms


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def _outputs():
    # One image, 2 queries, 2 real objects + no-object, 2 verbs; logits = log of the
    # probabilities.
    obj_prob = torch.tensor([[[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]])
    verb = torch.tensor([[[logit(0.8), logit(0.1)], [logit(0.5), logit(0.9)]]])
    human = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]]])
    obj = torch.tensor([[[0.5, 0.5, 1.0, 1.0], [0.75, 0.75, 0.5, 0.5]]])
    # IS probs .5 and .75
    is_logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]])
    return StudentOutput(human, obj, obj_prob.log(), verb, is_logits)


def test_triplet_score_is_verb_times_best_real_object_score():
    (pred,) = postprocess(_outputs(), torch.tensor([[100, 200]]), use_nms=False)
    # q0: object 1 (.5) -> verbs .8*.5=.4, .1*.5=.05; q1: object 0 (.6) -> .3, .54
    assert np.allclose(pred.scores, [0.54, 0.4, 0.3, 0.05], atol=1e-5)
    assert pred.query_idx.tolist() == [1, 0, 1, 0] and pred.verbs.tolist() == [
        1,
        0,
        0,
        1,
    ]
    assert pred.object_classes.tolist() == [0, 1, 0, 1]
    # boxes back to pixels of a 200 x 100 (w x h) image: q0 human cxcywh (.5,.5,.5,.5)
    assert np.allclose(pred.human_boxes_xyxy_px[1], [50, 25, 150, 75])
    assert np.allclose(pred.object_boxes_xyxy_px[1], [0, 0, 200, 100])


def test_validity_mask_top_k_and_interactive_score():
    valid = torch.tensor([[True, False], [True, True]])  # object 0 cannot take verb 1
    (pred,) = postprocess(
        _outputs(),
        torch.tensor([[100, 200]]),
        valid_object_verb=valid,
        top_k=2,
        use_nms=False,
        use_interactive_score=True,
    )
    # masked: q1 verb 1 -> 0; times IS: q0 .4*.5=.2, .05*.5; q1 .3*.75=.225 -> top 2
    assert np.allclose(pred.scores, [0.225, 0.2], atol=1e-5)


def test_nms_suppresses_only_overlapping_triplets_of_the_same_object_class_and_verb():
    h = np.array(
        [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], float
    )
    o = np.array(
        [[20, 20, 30, 30], [20, 20, 30, 31], [20, 20, 30, 30], [20, 20, 30, 30]], float
    )
    classes = np.array([1, 1, 1, 1])
    verbs = np.array([3, 3, 4, 3])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # 1 overlaps 0 (same class and verb, IoU_h = 1, IoU_o = 121/132 -> 1 * .917^.5 >
    # .7): gone. 2 has another verb; 3 has a far-away human (IoU_h = 0): both kept.
    keep = triplet_nms(h, o, classes, verbs, scores, threshold=0.7, alpha=1.0, beta=0.5)
    assert keep.tolist() == [0, 2, 3]
    # a threshold above the overlap keeps everything
    assert triplet_nms(h, o, classes, verbs, scores, threshold=0.99).tolist() == [
        0,
        1,
        2,
        3,
    ]


def test_postprocess_kwargs_map_the_config():
    kwargs = postprocess_kwargs(PostprocessConfig(top_k=7, use_nms=False))
    assert (
        kwargs["top_k"] == 7
        and kwargs["use_nms"] is False
        and kwargs["nms_beta"] == 0.5
    )
