"""The student: CDN (backbone, encoder, human-object + interaction decoders) with EoID's
IS head.

`build_student` makes one from a preset; `load_detr_init` initialises it from a DETR-R50
COCO checkpoint file the way CDN/EoID convert it (see its docstring for the one
departure).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from eoid.errors import (
    UNSAFE_LOAD_ADVICE,
    CheckpointError,
    ConfigError,
    WeightsNotFoundError,
    first_line,
)
from eoid.student.backbone import Backbone, coordinate_channels
from eoid.student.presets import get_preset
from eoid.student.transformer import CascadeTransformer, sine_position_encoding

# "none": no IS head (CDN's own weights)
IS_HEADS = ("interaction", "human_object", "none")


class StudentOutput(NamedTuple):
    """One decoder layer's predictions (the last layer's, with the earlier ones in
    `aux`).
    """

    # (B, Q, 4) in [0, 1], normalised by the unpadded image size
    human_boxes_cxcywh: Tensor
    object_boxes_cxcywh: Tensor  # (B, Q, 4) same frame
    object_logits: Tensor  # (B, Q, num_objects + 1), last = no object
    verb_logits: Tensor  # (B, Q, num_verbs), sigmoid per verb
    # (B, Q, 2): EoID's IS head, index 1 = interactive; None: no head
    interactive_logits: Tensor | None
    # one per earlier decoder layer, first layer first
    aux: tuple["StudentOutput", ...] = ()

    def interactive_prob(self) -> Tensor:
        """(B, Q) probability that each query is an interactive pair: softmax(IS
        logits)[..., 1].
        """
        if self.interactive_logits is None:
            raise ConfigError(
                "this student has no interactive-score head (student.is_head = 'none', "
                "e.g. CDN weights from `eoid import-checkpoint`); nothing can use its "
                "interactive score: set post.use_interactive_score = false."
            )
        return self.interactive_logits.softmax(-1)[..., 1]


class MLP(nn.Module):
    """DETR's box head: Linear-ReLU stacks (`layers.{i}` names as in DETR's
    `bbox_embed`).
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int, num_layers: int):
        super().__init__()
        dims = [d_in] + [d_hidden] * (num_layers - 1) + [d_out]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])
        )

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x


class CDN(nn.Module):
    """CDN with EoID's interactive-score head.

    forward(images (B, 3, H, W) normalised pixels, padding_mask (B, H, W) bool True =
    padding) -> StudentOutput of the last decoder layer pair, with `aux` for the earlier
    ones. Human/object boxes and classes come from the human-object decoder, verbs from
    the interaction decoder; the IS head sits on the interaction decoder (EoID) or on
    the human-object decoder (`is_head="human_object"`, the paper's Fig. 4 comparison);
    `is_head="none"` builds no IS head (CDN's released weights have none) and outputs
    `interactive_logits=None`.
    """

    def __init__(
        self,
        backbone: Backbone,
        transformer: CascadeTransformer,
        num_objects: int,
        num_verbs: int,
        num_queries: int,
        is_head: str = "interaction",
        box_anchors: bool = False,
        local_attention: bool = False,
    ):
        super().__init__()
        if is_head not in IS_HEADS:
            raise ConfigError(
                f"student.is_head = {is_head!r}; choose one of {IS_HEADS}"
            )
        if local_attention and not box_anchors:
            raise ConfigError(
                "local_attention needs box_anchors (it centres attention on the"
                " anchors)"
            )
        d = transformer.decoder.norm.normalized_shape[0]
        self.backbone, self.transformer = backbone, transformer
        self.input_proj = nn.Conv2d(backbone.num_channels, d, kernel_size=1)
        self.query_embed = nn.Embedding(num_queries, d)
        self.sub_bbox_embed = MLP(d, d, 4, 3)
        self.obj_bbox_embed = MLP(d, d, 4, 3)
        self.obj_class_embed = nn.Linear(d, num_objects + 1)
        self.verb_class_embed = nn.Linear(d, num_verbs)
        self.is_embed = nn.Linear(d, 2) if is_head != "none" else None
        self.is_head = is_head
        self.num_objects, self.num_verbs, self.num_queries = (
            num_objects,
            num_verbs,
            num_queries,
        )
        self.box_anchors, self.local_attention = box_anchors, local_attention
        self.num_heads = transformer.decoder.layers[0].multihead_attn.num_heads
        if box_anchors:
            # a learned reference box per query (logit space); the heads predict offsets
            # from it, so queries start spread over the image instead of all predicting
            # the mean box (Anchor-/DAB-DETR's remedy for slow convergence; used by the
            # tiny preset).
            self.human_anchor = nn.Embedding(num_queries, 4)
            self.object_anchor = nn.Embedding(num_queries, 4)
            with torch.no_grad():
                for anchor in (self.human_anchor, self.object_anchor):
                    anchor.weight[:, :2].uniform_(0.1, 0.9)
                    anchor.weight[:, 2:].fill_(0.25)
                    anchor.weight.copy_(torch.logit(anchor.weight))
                for head in (self.sub_bbox_embed, self.obj_bbox_embed):
                    nn.init.zeros_(head.layers[-1].weight)
                    nn.init.zeros_(head.layers[-1].bias)

    def forward(self, images: Tensor, padding_mask: Tensor) -> StudentOutput:
        features, mask = self.backbone(images, padding_mask)
        src = self.input_proj(features)
        pos = sine_position_encoding(mask, src.shape[1] // 2).to(src.dtype)
        bias = (
            anchor_attention_bias(
                self.human_anchor.weight,
                self.object_anchor.weight,
                mask,
                self.num_heads,
            ).to(src.dtype)
            if self.local_attention
            else None
        )
        ho_out, int_out = self.transformer(
            src, mask, self.query_embed.weight, pos, bias
        )
        # CDN pairs the last min(L_ho, L_int) layers of both decoders, i-th with i-th.
        # The depth comes from the modules, not the tensors, so an exported (traced)
        # graph has no shape branch.
        depth = min(
            len(self.transformer.decoder.layers),
            len(self.transformer.interaction_decoder.layers),
        )
        ho_out, int_out = ho_out[-depth:].unbind(0), int_out[-depth:].unbind(0)
        is_source = int_out if self.is_head == "interaction" else ho_out
        human_ref = self.human_anchor.weight if self.box_anchors else 0.0
        object_ref = self.object_anchor.weight if self.box_anchors else 0.0
        layers = [
            StudentOutput(
                (self.sub_bbox_embed(h) + human_ref).sigmoid(),
                (self.obj_bbox_embed(h) + object_ref).sigmoid(),
                self.obj_class_embed(h),
                self.verb_class_embed(i),
                self.is_embed(s) if self.is_embed is not None else None,
            )
            for h, i, s in zip(ho_out, int_out, is_source)
        ]
        return layers[-1]._replace(aux=tuple(layers[:-1]))


def anchor_attention_bias(
    human_anchor: Tensor, object_anchor: Tensor, mask: Tensor, heads: int
) -> Tensor:
    """Cross-attention bias putting a Gaussian around each query's anchor boxes
    (SMCA-DETR's prior).

    human_anchor, object_anchor (Q, 4) cxcywh logits; mask (B, h, w) True = padding. The
    first half of the heads look around the human anchor, the rest around the object
    anchor: log N(cell; centre, sigma) with sigma = half the anchor's size + 0.05 per
    axis, -inf at padded cells. Returns (B * heads, Q, h * w). A decoder whose attention
    is not tied to positions can settle on the same answer for every image (the mean
    scene); this prior makes each query read the features around where its boxes are.
    """
    cells = coordinate_channels(mask).flatten(2).transpose(1, 2)  # (B, S, 2)
    biases = []
    for anchor in (human_anchor, object_anchor):
        box = anchor.sigmoid()
        sigma = box[:, 2:] / 2 + 0.05  # (Q, 2)
        d = (cells[:, None, :, :] - box[None, :, None, :2]) / sigma[None, :, None, :]
        # (B, Q, S)
        biases.append(-0.5 * d.pow(2).sum(-1))
    human_heads = heads // 2
    bias = torch.stack(
        [biases[0]] * human_heads + [biases[1]] * (heads - human_heads), dim=1
    )
    bias = bias.masked_fill(mask.flatten(1)[:, None, None, :], float("-inf"))
    return bias.flatten(0, 1)


def build_student(
    preset: str,
    num_objects: int,
    num_verbs: int,
    num_queries: int = 64,
    is_head: str = "interaction",
    detach: bool = True,
    backbone_weights: str | Path | None = None,
    dropout: float | None = None,
) -> CDN:
    """A CDN student of the named preset ("cdn-s", "cdn-b", "cdn-l", "tiny").

    num_objects: real object classes (a no-object logit is added); num_verbs: verb
    classes. backbone_weights: optional local torchvision ResNet state dict; nothing is
    downloaded. dropout: transformer dropout (None = the preset's).
    """
    p = get_preset(preset)
    if dropout is not None:
        p = dataclasses.replace(p, dropout=dropout)
    backbone = Backbone(p.backbone, backbone_weights or None)
    transformer = CascadeTransformer(
        p.hidden_dim,
        p.num_heads,
        p.ffn_dim,
        p.dropout,
        p.enc_layers,
        p.dec_layers_ho,
        p.dec_layers_interaction,
        detach,
    )
    return CDN(
        backbone,
        transformer,
        num_objects,
        num_verbs,
        num_queries,
        is_head,
        p.box_anchors,
        p.local_attention,
    )


# DETR's class_embed has 92 rows: COCO ids 0..90, then no-object
DETR_NO_OBJECT_ROW = 91


def load_detr_init(
    model: CDN,
    path: str | Path,
    coco_ids_of_objects: list[int],
    init_interaction_decoder: bool = True,
) -> list[str]:
    """Initialise `model` from a DETR COCO checkpoint file, as CDN/EoID's converter
    does.

    Copied: backbone, input_proj, encoder, human-object decoder (DETR's first L layers
    and final norm), the first `num_queries` query embeddings, DETR's box head into both
    box heads, and DETR's class rows [coco_ids_of_objects] + [no-object] into the object
    head (`coco_ids_of_objects[i]` = COCO category id of our object class i).
    init_interaction_decoder: also copy DETR's decoder into the interaction decoder.
    CDN's converter meant to (it writes `stage2_decoder` keys) but the names do not
    match, so the original leaves it random (EOID_CODE_FACTS §10.17); True follows the
    intent, False the code. Verb and IS heads keep their fresh init. Returns the model
    keys left at their init.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{path}: DETR checkpoint not found. Pass a local "
            "detr-r50 COCO file (student.detr_init) or leave it empty."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickled extras (e.g. an argparse Namespace) are refused
        raise CheckpointError(
            f"{path}: cannot be read as tensors only ({first_line(err)})."
            f" {UNSAFE_LOAD_ADVICE} (DETR's release: detr-r50-e632da11.pth)."
        ) from None
    detr = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    if len(coco_ids_of_objects) != model.num_objects:
        raise ConfigError(
            f"{path}: {len(coco_ids_of_objects)} COCO ids given for "
            f"{model.num_objects} object classes; give one per class."
        )
    if "class_embed.weight" not in detr:
        raise CheckpointError(
            f"{path}: no `class_embed.weight`; not a DETR detection checkpoint."
        )
    own = model.state_dict()
    new: dict[str, Tensor] = {}
    dec_layers = {
        "transformer.decoder": len(model.transformer.decoder.layers),
        "transformer.interaction_decoder": len(
            model.transformer.interaction_decoder.layers
        ),
    }
    targets = ["transformer.decoder"] + (
        ["transformer.interaction_decoder"] if init_interaction_decoder else []
    )
    for key, value in detr.items():
        if key.startswith("backbone.0.body."):
            new["backbone.body." + key[len("backbone.0.body.") :]] = value
        elif key.startswith(("input_proj.", "transformer.encoder.")):
            new[key] = value
        elif key.startswith("transformer.decoder."):
            rest = key[len("transformer.decoder.") :]
            for prefix in targets:
                if (
                    rest.startswith("layers.")
                    and int(rest.split(".")[1]) >= dec_layers[prefix]
                ):
                    continue
                new[f"{prefix}.{rest}"] = value
        elif key.startswith("bbox_embed."):
            new["sub_bbox_embed." + key[len("bbox_embed.") :]] = value
            new["obj_bbox_embed." + key[len("bbox_embed.") :]] = value
    rows = torch.as_tensor(list(coco_ids_of_objects) + [DETR_NO_OBJECT_ROW])
    new["obj_class_embed.weight"] = detr["class_embed.weight"][rows]
    new["obj_class_embed.bias"] = detr["class_embed.bias"][rows]
    queries = detr["query_embed.weight"][: model.num_queries]
    if queries.shape[1:] == own["query_embed.weight"].shape[1:]:  # else reported below
        queries = torch.cat([queries, own["query_embed.weight"][len(queries) :]])
    new["query_embed.weight"] = queries
    for key, value in new.items():
        if key not in own or own[key].shape != value.shape:
            raise CheckpointError(
                f"{path}: `{key}` {tuple(value.shape)} does not fit this "
                f"student ({tuple(own[key].shape) if key in own else 'absent'}); "
                "DETR-R50 only fits presets with a resnet50 backbone, width 256."
            )
    own_backbone = [k for k in own if k.startswith("backbone.body.") and k not in new]
    if own_backbone:
        raise CheckpointError(
            f"{path}: the checkpoint's backbone lacks {own_backbone[:3]} ... of "
            "this student; DETR-R50 only fits presets with a resnet50 backbone."
        )
    model.load_state_dict(new, strict=False)
    return sorted(k for k in own if k not in new)
