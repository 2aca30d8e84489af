"""How much memory the encoder's self-attention asks for: arithmetic on a preset, no
tensors.

The encoder attends over every cell of the padded feature map, S = ceil(H / stride) *
ceil(W / stride) tokens, so one attention matrix is batch x heads x S^2 values: the one
activation that grows with the fourth power of the image side. Whether torch
materialises it depends on the kernel: torch's fused attention (CPU flash kernel, CUDA
memory-efficient and flash kernels) streams over it and keeps O(S) per head; the plain
"math" path computes it, and on the CPU torch (2.x) falls back to that path whenever
attention dropout is active in training. Measured on this CPU (torch 2.14, 1 thread,
peak RSS of a forward + backward of `Encoder` at S = 2048 and 3072, batch 2, 4 heads):
dropout 0.1 in training kept 4.3 / 7.5 / 11.0 float32 matrices for 1 / 2 / 3 layers;
dropout 0 (or evaluation) kept less than one.
"""

from __future__ import annotations

import math

from eoid.student.presets import Preset

# output stride of each backbone: ConvStem's three stride-2 convolutions; a ResNet's C5
BACKBONE_STRIDES = {
    "conv-stem": 8,
    "resnet18": 32,
    "resnet34": 32,
    "resnet50": 32,
    "resnet101": 32,
}

# A training forward on the math path keeps, per encoder layer and per attention value:
# the softmax output and safe-softmax's copy (saved for backward), the dropout output
# (saved by the product with the values) in the compute dtype, and dropout's keep-mask
# (1 byte, bool). One more matrix lives at the peak: the next layer's logits in the
# forward, or a gradient in the backward.
SAVED_PER_LAYER_VALUES = 3
SAVED_PER_LAYER_BYTES = 1
TRANSIENT_VALUES = 1


def feature_cells(preset: Preset, height_px: int, width_px: int) -> int:
    """Tokens S the encoder sees for a (height_px, width_px) padded batch: each
    stride-2 layer (kernel 3 or 7, padding 1 or 3) rounds up, so each side is
    ceil(side / stride)."""
    stride = BACKBONE_STRIDES[preset.backbone]
    return math.ceil(height_px / stride) * math.ceil(width_px / stride)


def encoder_attention_bytes(
    preset: Preset,
    height_px: int,
    width_px: int,
    batch: int,
    value_bytes: int = 4,
    dropout: float = 0.0,
    training: bool = True,
    fused: bool = False,
) -> int:
    """Peak bytes of the encoder's attention matrices for one padded batch on one
    device.

    value_bytes: 4 for float32, 2 under bf16 autocast. `fused`: the kernel streams the
    matrix (CUDA, see `fused_attention`); then, as in evaluation or without dropout, no
    S x S matrix is kept and the estimate is 0. This is a lower bound of what the step
    needs (convolution activations, weights and optimizer state come on top), so a
    refusal built on it is sure.
    """
    if fused or not training or dropout <= 0:
        return 0
    tokens = feature_cells(preset, height_px, width_px)
    values = batch * preset.num_heads * tokens * tokens
    per_layer = SAVED_PER_LAYER_VALUES * value_bytes + SAVED_PER_LAYER_BYTES
    return values * (preset.enc_layers * per_layer + TRANSIENT_VALUES * value_bytes)


def fused_attention(device: str) -> bool:
    """Whether training attention with dropout runs in a fused kernel on `device`
    ("cuda:0", "cpu").

    torch's CUDA memory-efficient kernel takes both the padding mask and dropout; its
    CPU flash kernel takes no dropout, so training with dropout falls back to the math
    path there.
    """
    return device.startswith("cuda")
