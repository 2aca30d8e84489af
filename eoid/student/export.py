"""The student's forward as an exported graph sees it: two tensors in, the last layer's
tensors out.

The auxiliary decoder layers only feed the training loss, so the graph returns the last
layer; `student_output` turns the graph's named outputs back into a StudentOutput, so
post-processing runs on them exactly as on the torch model's.
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from eoid.student.model import CDN, StudentOutput

INPUT_NAMES = ("images", "padding_mask")


def output_names(model: CDN) -> tuple[str, ...]:
    """StudentOutput's field names the graph returns, in order (no interactive_logits
    without IS head).
    """
    names = StudentOutput._fields[:5]
    return names if model.is_embed is not None else names[:4]


class ExportedForward(nn.Module):
    """images (B, 3, H, W) float32 ImageNet-normalised, padding_mask (B, H, W) bool
    (True = padding) -> the last decoder layer's tensors, named by `output_names`:
    human_boxes_cxcywh, object_boxes_cxcywh (B, Q, 4) in [0, 1] of the unpadded image,
    object_logits (B, Q, num_objects + 1), verb_logits (B, Q, num_verbs),
    interactive_logits (B, Q, 2).
    """

    def __init__(self, model: CDN):
        super().__init__()
        self.model = model
        self.names = output_names(model)

    def forward(self, images: Tensor, padding_mask: Tensor) -> tuple[Tensor, ...]:
        out = self.model(images, padding_mask)
        return tuple(getattr(out, name) for name in self.names)


def student_output(named: Mapping[str, Tensor]) -> StudentOutput:
    """A StudentOutput (no aux layers) from tensors named as `output_names` names them."""
    return StudentOutput(
        named["human_boxes_cxcywh"],
        named["object_boxes_cxcywh"],
        named["object_logits"],
        named["verb_logits"],
        named.get("interactive_logits"),
    )
