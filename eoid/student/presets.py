"""Student sizes as data: the CDN presets of the papers plus a tiny one for CPU tests.

CDN-S is what the EoID scripts train (R50, 6 encoder, 3 + 3 decoder layers). CDN-L follows
CDN#15 (its released weights load strictly with resnet101 and 6 + 6 decoder layers). CDN-B
(R50, 6 + 6) is from memory of the CDN paper and was not checked against code
([unverified] in EOID_CODE_FACTS.md §1).
"""
from __future__ import annotations

from dataclasses import dataclass

from eoid.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """Architecture of one student size (every number a model builder needs)."""
    backbone: str                  # "resnet18" | "resnet34" | "resnet50" | "resnet101" | "conv-stem"
    hidden_dim: int                # transformer width
    num_heads: int                 # attention heads
    ffn_dim: int                   # feed-forward width
    enc_layers: int                # transformer encoder layers
    dec_layers_ho: int             # human-object decoder layers
    dec_layers_interaction: int    # interaction decoder layers
    dropout: float                 # dropout in attention and feed-forward blocks
    num_queries: int               # default number of queries (a build argument overrides it)


PRESETS: dict[str, Preset] = {
    "cdn-s": Preset("resnet50", 256, 8, 2048, 6, 3, 3, 0.1, 64),
    "cdn-b": Preset("resnet50", 256, 8, 2048, 6, 6, 6, 0.1, 64),   # [unverified] depths
    "cdn-l": Preset("resnet101", 256, 8, 2048, 6, 6, 6, 0.1, 64),
    # CPU tests and the quickstart: a 4-conv stride-16 stem with coordinate channels
    # (backbone.ConvStem), 1 encoder and 2 + 2 decoder layers (so auxiliary outputs exist),
    # no dropout.
    "tiny": Preset("conv-stem", 64, 4, 128, 1, 2, 2, 0.0, 16),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; an unknown name is a ConfigError listing the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"student preset {name!r} does not exist; choose one of "
                          f"{sorted(PRESETS)} (config key student.preset)") from None
