"""The convolutional backbone: a torchvision ResNet as DETR uses it, or a tiny conv
stem.

ResNets use FrozenBatchNorm2d and freeze the stem and layer1 (DETR's `BackboneBase`);
the output is C5 (stride 32). The conv stem is stride 16 with two coordinate channels.
Weights are never downloaded: random init, or a local torchvision state-dict file.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from eoid.errors import CheckpointError, WeightsNotFoundError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
_TRAINABLE = ("layer2", "layer3", "layer4")  # DETR: stem and layer1 stay frozen


class ConvStem(nn.Module):
    """Small CPU backbone: stride-2 3x3 convolutions (GroupNorm + ReLU), stride
    2**len(widths).

    The default is three stages (stride 8: a 20 x 20 map for the quickstart's 160 px
    images; stride 32 left 5 x 5 cells for objects of 10-40 px, and stride 16 put a
    10-15 px ball inside one cell). `coord_channels` appends the (x, y) position of each
    cell in the unpadded image to the features (see `coordinate_channels`), so the
    values the decoder attends to say where they are: DETR adds positions to queries and
    keys only, and a shallow stem cannot learn absolute position from zero padding,
    which left the tiny student unable to localise.
    """

    def __init__(
        self, widths: tuple[int, ...] = (32, 64, 96), coord_channels: bool = True
    ):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for w in widths:
            layers += [
                nn.Conv2d(in_ch, w, 3, stride=2, padding=1),
                nn.GroupNorm(4, w),
                nn.ReLU(),
            ]
            in_ch = w
        self.body = nn.Sequential(*layers)
        self.coord_channels = coord_channels
        self.num_channels = in_ch + (2 if coord_channels else 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def resize_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """Nearest-neighbour resize of a (B, H, W) bool mask to (B, height, width), as
    DETR's `F.interpolate(mask, size)`, with the source rows and columns picked by
    integer arithmetic (row i <- floor(i * H / height)).

    Equal to torch's nearest interpolation for every map size a stride-8/16/32 network
    gives (checked for H, W < 2100). Written out because ONNX's Resize computes the same
    index as i / (height / H) in float and lands one row short at exact multiples (120
    px -> 4 cells: row 3 reads pixel 89 instead of 90), which flipped padded cells in
    the exported student.
    """
    rows = torch.arange(height, device=mask.device) * mask.shape[1] // height
    cols = torch.arange(width, device=mask.device) * mask.shape[2] // width
    return mask.index_select(1, rows).index_select(2, cols)


def coordinate_channels(mask: Tensor) -> Tensor:
    """(x, y) centre of every cell in [0, 1] of its unpadded image: mask (B, h, w) bool
    -> (B, 2, h, w).

    Like DETR's sine encoding, coordinates count non-padded cells, so a padded image's
    cells get the same values as the unpadded image alone.
    """
    not_mask = (~mask).float()
    y = (not_mask.cumsum(1) - 0.5) / not_mask.sum(1, keepdim=True).clamp(min=1)
    x = (not_mask.cumsum(2) - 0.5) / not_mask.sum(2, keepdim=True).clamp(min=1)
    return torch.stack((x, y), dim=1) * not_mask[:, None]


class ResNetBody(nn.Module):
    """A torchvision ResNet up to layer4, FrozenBatchNorm2d, stem + layer1 frozen."""

    def __init__(self, name: str):
        super().__init__()
        net = getattr(torchvision.models, name)(
            weights=None, norm_layer=FrozenBatchNorm2d
        )
        for attr in (
            "conv1",
            "bn1",
            "relu",
            "maxpool",
            "layer1",
            "layer2",
            "layer3",
            "layer4",
        ):
            setattr(self, attr, getattr(net, attr))
        for pname, p in self.named_parameters():
            if not pname.startswith(_TRAINABLE):
                p.requires_grad_(False)
        self.num_channels = 512 if name in ("resnet18", "resnet34") else 2048

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Backbone(nn.Module):
    """Image -> C5 feature map and its padding mask.

    forward(images (B, 3, H, W), padding_mask (B, H, W) bool, True = padding)
    -> features (B, C, h, w), mask (B, h, w) bool (the padding mask resized to the map).
    """

    def __init__(self, name: str, weights: str | Path | None = None):
        super().__init__()
        if name == "conv-stem":
            self.body: nn.Module = ConvStem()
        elif name in RESNETS:
            self.body = ResNetBody(name)
        else:
            raise ValueError(
                f"unknown backbone {name!r}; expected one of {RESNETS + ('conv-stem',)}"
            )
        self.num_channels: int = self.body.num_channels
        if weights:
            load_backbone_weights(self.body, Path(weights))

    def forward(self, images: Tensor, padding_mask: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(images)
        mask = resize_mask(padding_mask, features.shape[-2], features.shape[-1])
        if getattr(self.body, "coord_channels", False):
            features = torch.cat(
                (features, coordinate_channels(mask).to(features.dtype)), dim=1
            )
        return features, mask


def load_backbone_weights(body: nn.Module, path: Path) -> None:
    """Load a local torchvision ResNet state dict (the classifier `fc.*` is ignored)."""
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{path}: backbone weights file not found. Pass a local "
            "torchvision ResNet state dict (student.backbone_weights) or "
            "leave it empty for random init."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for bad or unsafe files
        raise CheckpointError(
            f"{path}: cannot read as a tensor-only state dict ({err}). "
            "Save it with torch.save(model.state_dict(), path)."
        ) from None
    if (
        isinstance(state, dict)
        and "model" in state
        and isinstance(state["model"], dict)
    ):
        state = state["model"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = body.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(
        state.keys()
        - own.keys()
        - {k for k in state if k.endswith("num_batches_tracked")}
    )
    wrong = sorted(
        k for k in own.keys() & state.keys() if own[k].shape != state[k].shape
    )
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: not a state dict of this backbone; missing keys "
            f"{missing[:5]}, unexpected keys {unexpected[:5]}, wrong shapes "
            f"{wrong[:5]}. Pass the torchvision weights of the preset's ResNet."
        )
    body.load_state_dict(state, strict=False)
