"""Student sizes as data: the CDN presets of the papers plus a tiny one for CPU tests.

CDN-S is what the EoID scripts train (R50, 6 encoder, 3 + 3 decoder layers). CDN-L
follows CDN#15 (its released weights load strictly with resnet101 and 6 + 6 decoder
layers). CDN-B (R50, 6 + 6) is from memory of the CDN paper and was not checked against
code ([unverified] in EOID_CODE_FACTS.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass

from eoid.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """Architecture of one student size (every number a model builder needs)."""

    # "resnet18" | "resnet34" | "resnet50" | "resnet101" | "conv-stem"
    backbone: str
    hidden_dim: int  # transformer width
    num_heads: int  # attention heads
    ffn_dim: int  # feed-forward width
    enc_layers: int  # transformer encoder layers
    dec_layers_ho: int  # human-object decoder layers
    dec_layers_interaction: int  # interaction decoder layers
    dropout: float  # dropout in attention and feed-forward blocks
    # default number of queries (a build argument overrides it)
    num_queries: int
    # boxes as offsets from a learned per-query reference box
    box_anchors: bool = False
    # cross-attention biased to the anchors (needs box_anchors)
    local_attention: bool = False


PRESETS: dict[str, Preset] = {
    "cdn-s": Preset("resnet50", 256, 8, 2048, 6, 3, 3, 0.1, 64),
    "cdn-b": Preset("resnet50", 256, 8, 2048, 6, 6, 6, 0.1, 64),  # [unverified] depths
    "cdn-l": Preset("resnet101", 256, 8, 2048, 6, 6, 6, 0.1, 64),
    # CPU tests and the quickstart: a 3-conv stride-8 stem with coordinate channels
    # (backbone.ConvStem), 1 encoder and 2 + 2 decoder layers (so auxiliary outputs
    # exist), no dropout, 32 queries, boxes as offsets from learned anchors,
    # cross-attention biased to a Gaussian around the anchors
    # (model.anchor_attention_bias; without it half the quickstart runs gave the same
    # triplets for every image). On the quickstart world this reached in 1,200 steps
    # (human/object GIoU loss 0.50/0.68 on the training set) what the stride-16,
    # 16-query, anchor-free preset had not after 3,000 (0.5-0.7/0.7-1.0).
    "tiny": Preset(
        "conv-stem",
        64,
        4,
        128,
        1,
        2,
        2,
        0.0,
        32,
        box_anchors=True,
        local_attention=True,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; an unknown name is a ConfigError listing the valid
    ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"student preset {name!r} does not exist; choose one of "
            f"{sorted(PRESETS)} (config key student.preset)"
        ) from None
