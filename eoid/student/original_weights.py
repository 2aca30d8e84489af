"""The authors' EoID and CDN state dicts in eoid's names: pure functions over tensors,
no files.

The original model (EoID `models/EoID.py::HOIModel`, CDN `models/hoi.py::CDNHOI`) uses
DETR's names; eoid's student keeps them, except that DETR's `Joiner` puts the ResNet at
`backbone.0.body.`, eoid at `backbone.body.`. Nothing is transposed, split or reshaped
(the forward of both agrees to ~2e-6 once renamed). CDN has no IS head (`is_embed`); its
optional `matching_embed` is a 2-way head on the human-object decoder, eoid's
`is_head="human_object"`. CDN's V-COCO object head has one extra row (80: "absent
object" for role-less verbs) that eoid's V-COCO vocabulary lacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from torch import Tensor

from eoid.errors import CheckpointError
from eoid.student.presets import PRESETS

SOURCES = ("eoid-official", "cdn-official")
_SAME_NAME = re.compile(
    r"^(input_proj|query_embed|transformer\.(encoder|decoder|interaction_decoder)|"
    r"sub_bbox_embed|obj_bbox_embed|obj_class_embed|verb_class_embed)\."
)
_REFUSED = {  # key prefix -> why eoid cannot hold it
    "backbone.1.": (
        "a learned position embedding (--position_embedding learned); eoid's student"
        " has the sine encoding only"
    ),
    "transformer.encoder.norm.": (
        "an encoder norm (--pre_norm); eoid's layers are post-norm"
    ),
    "class_embed.": (
        "DETR's detection head: this is a DETR (or converted DETR) file, not a trained "
        "CDN/EoID model; use it with student.detr_init"
    ),
}
_RESNET_BY_BLOCKS = {
    (True, 6): "resnet50",
    (True, 23): "resnet101",
    (False, 2): "resnet18",
    (False, 6): "resnet34",
}  # (bottleneck blocks?, blocks in layer3)


@dataclass(frozen=True)
class Architecture:
    """What the tensors of an original checkpoint say about its model (heads are not
    visible).
    """

    # "resnet50", "resnet101", ... ("?" if not recognised)
    backbone: str
    hidden_dim: int
    ffn_dim: int
    enc_layers: int
    dec_layers_ho: int
    dec_layers_interaction: int
    num_queries: int
    # rows of obj_class_embed (objects + no-object, + CDN V-COCO's extra)
    num_object_rows: int
    num_verbs: int

    def depths(self) -> tuple:
        """The numbers a preset fixes, for comparison with `PRESETS`."""
        return (
            self.backbone,
            self.hidden_dim,
            self.ffn_dim,
            self.enc_layers,
            self.dec_layers_ho,
            self.dec_layers_interaction,
        )

    def describe(self) -> str:
        return (
            f"{self.backbone}, width {self.hidden_dim}, feed-forward {self.ffn_dim},"
            f" {self.enc_layers} encoder + {self.dec_layers_ho} human-object +"
            f" {self.dec_layers_interaction} interaction decoder layers,"
            f" {self.num_queries} queries"
        )


@dataclass
class KeyMapping:
    """An original state dict in eoid's names, and how every source key was placed."""

    state: dict[str, Tensor]  # eoid key -> tensor
    # (source.*, eoid.*) -> tensors
    groups: dict[tuple[str, str], int] = field(default_factory=dict)
    # "source key: why", not loaded
    dropped: list[str] = field(default_factory=list)
    # source keys no rule knows
    unplaced: list[str] = field(default_factory=list)


def strip_module_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Keys without DistributedDataParallel's `module.` (the released files have none)."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def refuse_foreign(state: Mapping[str, Tensor], source: str, where: str) -> None:
    """CheckpointError for a state dict eoid's student cannot represent, or from the
    other repo.
    """
    for prefix, why in _REFUSED.items():
        if any(k.startswith(prefix) for k in state):
            raise CheckpointError(f"{where}: has `{prefix}*` keys, {why}.")
    for needed in (
        "backbone.0.body.conv1.weight",
        "verb_class_embed.weight",
        "query_embed.weight",
    ):
        if needed not in state:
            raise CheckpointError(
                f"{where}: no `{needed}`; not a CDN/EoID model state dict. Pass the "
                "checkpoint written by the original main.py (its 'model' entry)."
            )
    has_is = "is_embed.weight" in state
    if source == "eoid-official" and not has_is:
        raise CheckpointError(
            f"{where}: no `is_embed` (EoID's IS head): this looks like a CDN "
            "checkpoint. Pass --from cdn-official."
        )
    if source == "cdn-official" and has_is:
        raise CheckpointError(
            f"{where}: has `is_embed` (EoID's IS head): this looks like an EoID "
            "checkpoint. Pass --from eoid-official."
        )


def _layers(state: Mapping[str, Tensor], prefix: str) -> int:
    found = [
        int(m[1])
        for k in state
        for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)]
        if m
    ]
    return max(found) + 1 if found else 0


def infer_architecture(state: Mapping[str, Tensor]) -> Architecture:
    """Sizes read off an original state dict (its own names, `backbone.0.body.`)."""
    bottleneck = "backbone.0.body.layer1.0.conv3.weight" in state
    blocks = _layers(state, "backbone.0.body.layer3.")
    return Architecture(
        backbone=_RESNET_BY_BLOCKS.get((bottleneck, blocks), "?"),
        hidden_dim=state["query_embed.weight"].shape[1],
        ffn_dim=(
            state["transformer.encoder.layers.0.linear1.weight"].shape[0]
            if "transformer.encoder.layers.0.linear1.weight" in state
            else 0
        ),
        enc_layers=_layers(state, "transformer.encoder.layers."),
        dec_layers_ho=_layers(state, "transformer.decoder.layers."),
        dec_layers_interaction=_layers(
            state, "transformer.interaction_decoder.layers."
        ),
        num_queries=state["query_embed.weight"].shape[0],
        num_object_rows=(
            state["obj_class_embed.weight"].shape[0]
            if "obj_class_embed.weight" in state
            else 0
        ),
        num_verbs=state["verb_class_embed.weight"].shape[0],
    )


def matching_presets(arch: Architecture) -> list[str]:
    """eoid presets with exactly these depths and widths (never tiny: its backbone is a
    conv stem).
    """
    return [
        name
        for name, p in PRESETS.items()
        if (
            p.backbone,
            p.hidden_dim,
            p.ffn_dim,
            p.enc_layers,
            p.dec_layers_ho,
            p.dec_layers_interaction,
        )
        == arch.depths()
    ]


def _group(key: str) -> str:
    """The module a key belongs to, as the printed mapping lists it
    (backbone.0.body.layer1.*).
    """
    parts = key.split(".")
    if parts[0] == "backbone":
        depth = parts.index("body") + 2 if "body" in parts else 2
    else:
        depth = 2 if parts[0] == "transformer" else 1
    return ".".join(parts[:depth]) + ".*"


def map_original_keys(
    state: Mapping[str, Tensor],
    source: str,
    is_head: str,
    object_rows: list[int] | None = None,
) -> KeyMapping:
    """Rename an original state dict (no `module.` prefix) to eoid's student keys.

    is_head: the student's IS head ("interaction" for EoID's is_embed, "human_object" to
    take CDN's matching_embed, "none"). object_rows: rows of obj_class_embed to keep
    (V-COCO CDN: all but row 80), None = all. Every source key ends in `state`,
    `dropped` or `unplaced`.
    """
    out = KeyMapping({})

    def place(src: str, dst: str, value: Tensor) -> None:
        out.state[dst] = value
        pair = (_group(src), _group(dst))
        out.groups[pair] = out.groups.get(pair, 0) + 1

    for key, value in state.items():
        if key.startswith("backbone.0.body."):
            if key.endswith("num_batches_tracked"):
                out.dropped.append(
                    f"{key}: a BatchNorm step counter; FrozenBatchNorm2d keeps none"
                )
            else:
                place(
                    key, "backbone.body." + key.removeprefix("backbone.0.body."), value
                )
        elif key.startswith("obj_class_embed.") and object_rows is not None:
            place(key, key, value[object_rows])
        elif _SAME_NAME.match(key) or (
            key.startswith("is_embed.") and is_head == "interaction"
        ):
            place(key, key, value)
        elif key.startswith("matching_embed.") and is_head == "human_object":
            place(key, "is_embed." + key.removeprefix("matching_embed."), value)
        elif key.startswith("matching_embed."):
            out.dropped.append(
                f"{key}: the original's --use_matching head; the student's IS head "
                f"is {'is_embed' if is_head != 'none' else 'absent'}"
            )
        else:
            out.unplaced.append(key)
    return out
