"""The CLIP teacher: with `clip_sources`, the only modules that import open_clip (lazily:
it costs ~5 s to import).

`load_teacher(model_name, weights, device)` builds any open_clip model by name (or from
a JSON model config file, or a config shipped in `eoid/data/clip_configs/`) with weights
given as an open_clip pretrained tag found on this machine or a local file. It never
downloads: a tag whose file is not in the local caches is a WeightsNotFoundError that
says how to pass a file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from difflib import get_close_matches
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from eoid.errors import ConfigError, WeightsNotFoundError
from eoid.files import file_sha256
from eoid.teacher_cache.clip_sources import (
    _crop_spec,
    _gist,
    _is_torchscript,
    _local_file_for_tag,
    _missing,
    _register_packaged_configs,
    _tags_preprocess,
    _tokenizer,
    resolve_model_name,
)
from eoid.teacher_cache.crops import CropSpec

log = logging.getLogger(__name__)

# teacher.precision, see resolve_precision
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
# weights value that builds the model with random init (tests, benchmarks)
RANDOM_WEIGHTS = "none"
BUNDLED_WEIGHTS = "bundled"  # weights shipped in eoid/data/<model_name>.safetensors
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


@dataclass
class Teacher:
    """A frozen CLIP model in eval mode with the crop preprocessing it expects."""

    model: Any  # open_clip CLIP module (eval, no grad)
    tokenizer: Any  # open_clip tokenizer for this model
    crop_spec: CropSpec
    device: torch.device
    model_name: str
    # "tag:<tag>", "sha256:<hex>" or "random-init": for the fingerprint
    weights_id: str
    # bf16 autocast over float32 weights; None = no autocast
    autocast_dtype: torch.dtype | None = None
    # NHWC convolutions (faster ResNet towers on GPU tensor cores)
    channels_last: bool = False
    # the image tower's weight dtype (float16 for "fp16")
    input_dtype: torch.dtype = torch.float32

    @torch.inference_mode()
    def encode_images(self, crops: Tensor) -> Tensor:
        """(B, 3, S, S) normalised crops -> (B, D) float32 unit-length image embeddings."""
        # float16 weights take float16 crops, as OpenAI's encode_image casts them
        # (image.type(dtype))
        crops = crops.to(self.device, dtype=self.input_dtype, non_blocking=True)
        if self.channels_last:
            crops = crops.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            emb = self.model.encode_image(crops)
        return F.normalize(emb.float(), dim=-1)

    @property
    def context_length(self) -> int | None:
        """Tokens the text tower reads (77 for OpenAI's CLIP); a longer prompt is cut
        there.
        """
        found = getattr(self.model, "context_length", None) or getattr(
            self.tokenizer, "context_length", None
        )
        return int(found) if found else None

    def overlong(self, prompts: list[str]) -> tuple[str, int] | None:
        """(the longest prompt, its token count with start and end) if it exceeds the
        context, else None.

        The tokenizer silently cuts a longer prompt: a template whose {verb_ing} /
        {object} fall past the cut gives every HOI the same text, and uniform teacher
        rows.
        """
        limit = self.context_length
        if limit is None or not prompts:
            return None
        # open_clip's BPE tokenizer
        if hasattr(self.tokenizer, "sot_token_id"):
            counts = [len(self.tokenizer.encode(p)) + 2 for p in prompts]
        # a Hugging Face tokenizer
        elif getattr(self.tokenizer, "tokenizer", None) is not None:
            counts = [
                len(ids) for ids in self.tokenizer.tokenizer(prompts)["input_ids"]
            ]
        else:
            return None
        longest = max(range(len(prompts)), key=counts.__getitem__)
        return (prompts[longest], counts[longest]) if counts[longest] > limit else None

    @torch.inference_mode()
    def encode_texts(self, prompts: list[str], batch_size: int = 256) -> Tensor:
        """Prompts -> (T, D) float32 unit-length text embeddings (always float32, once
        per run).

        A prompt longer than the text tower's context is refused (ConfigError), never
        cut."""
        found = self.overlong(prompts)
        if found:
            raise ConfigError(
                f"prompt {found[0][:120]!r} is {found[1]} tokens; the text tower of"
                f" {self.model_name} reads {self.context_length}, so its end would be"
                " cut and HOIs could share one text. Shorten the template (--template,"
                " --templates, teacher.template) or the descriptions."
            )
        out = []
        for i in range(0, len(prompts), batch_size):
            tokens = self.tokenizer(prompts[i : i + batch_size]).to(self.device)
            out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        return torch.cat(out) if out else torch.zeros((0, self.embed_dim))

    @property
    def embed_dim(self) -> int:
        """D, the length of image and text embeddings."""
        return int(self.encode_texts(["a"]).shape[1])


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The precision the teacher runs at on `device` (what the cache fingerprint
    records).

    "fp16": float16 weights, as the original's clip.load keeps them on CUDA (open_clip's
    precision "fp16": convolutions, linear and attention weights in float16, LayerNorm
    computed in float32); "bf16": bf16 autocast over float32 weights; "fp32": float32.
    "auto" is the original's: fp16 on a GPU. A CPU always runs fp32, as the original's
    clip.load does there.
    """
    if precision not in PRECISIONS:
        raise ConfigError(
            f"teacher.precision = {precision!r}; choose one of {PRECISIONS}."
        )
    if not str(device).startswith("cuda"):
        if precision not in ("auto", "fp32"):
            log.info(
                "teacher.precision %s: the CPU runs the teacher in fp32", precision
            )
        return "fp32"
    return "fp16" if precision == "auto" else precision


def resolve_gamma(gamma: float | str, teacher: Teacher) -> float:
    """The softmax scale of the cosine similarity (teacher.gamma), for every phase that
    runs a teacher.

    A number is used as given; "model" is the weights' own logit_scale.exp(), as the
    original computes it (about 100 for OpenAI's CLIP, whose learned scale is clamped at
    100; 15.92 for the shipped eoid-synth-clip).
    """
    if isinstance(gamma, str) and gamma != "model":
        try:
            gamma = float(gamma)
        except ValueError:
            raise ConfigError(
                f'teacher.gamma = {gamma!r}: give a number (e.g. 100) or "model" '
                "(the CLIP weights' own logit scale)."
            ) from None
    if gamma != "model":
        return float(gamma)
    scale = getattr(teacher.model, "logit_scale", None)
    if not isinstance(scale, Tensor):
        raise ConfigError(
            f'teacher.gamma = "model": CLIP model {teacher.model_name!r} has no '
            "logit_scale; give teacher.gamma as a number."
        )
    return float(scale.detach().float().exp())


def load_teacher(
    model_name: str,
    weights: str,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> Teacher:
    """Build the teacher: open_clip `model_name` with `weights` (tag, local file,
    "bundled" or "none").

    precision: "fp32", "bf16" or "fp16" as resolve_precision describes them, applied on
    any device (resolve_precision is what keeps a CPU at fp32).
    """
    import open_clip

    _register_packaged_configs()
    name = resolve_model_name(model_name)
    if open_clip.get_model_config(name) is None and not name.startswith(
        ("hf-hub:", "local-dir:")
    ):
        near = get_close_matches(name, open_clip.list_models(), n=3)
        raise ConfigError(
            f"unknown CLIP model {name!r}; close open_clip names: {near or 'none'}. "
            "Pass an open_clip model name (e.g. --clip RN50x16) or a JSON model config."
        )
    device = torch.device(device)
    if precision not in PRECISIONS[1:]:
        raise ConfigError(
            f"teacher precision {precision!r}: expected one of {PRECISIONS[1:]}"
        )
    # "fp16" builds float16 weights (and float32 LayerNorms) the way open_clip loads
    # OpenAI's weights at precision "fp16"; bf16 is autocast over the float32 model
    build = "fp16" if precision == "fp16" else "fp32"
    kwargs: dict[str, Any] = {"precision": build}
    if weights == RANDOM_WEIGHTS:
        log.warning(
            "CLIP model %s built with RANDOM weights (weights='none'): for tests only",
            name,
        )
        model, weights_id = (
            open_clip.create_model(name, pretrained=None, **kwargs),
            "random-init",
        )
    else:
        if weights == BUNDLED_WEIGHTS:
            path = Path(
                str(resources.files("eoid.data").joinpath(f"{name}.safetensors"))
            )
            if not path.is_file():
                raise _missing(name, weights, f"eoid ships no {path.name}")
        elif Path(weights).suffix in WEIGHT_SUFFIXES or Path(weights).exists():
            path = Path(weights)
            if not path.is_file():
                raise _missing(name, weights, "no such file")
            kwargs["force_preprocess_cfg"] = _tags_preprocess(name)
        else:
            found, tag_cfg = _local_file_for_tag(name, weights)
            if not tag_cfg:
                tags = open_clip.list_pretrained_tags_by_model(name)
                raise _missing(
                    name,
                    weights,
                    f"not a file and not a pretrained tag of {name}; "
                    f"its tags: {tags or 'none'}",
                )
            if found is None:
                raise _missing(
                    name, weights, "the tag's file is not in the local caches"
                )
            path = Path(found)
            kwargs["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
            kwargs["force_preprocess_cfg"] = {
                k: tag_cfg[k] for k in ("mean", "std", "interpolation") if k in tag_cfg
            }
        weights_id = (
            f"tag:{weights}"
            if "force_quick_gelu" in kwargs
            else f"sha256:{file_sha256(path)}"
        )
        try:
            if _is_torchscript(path):
                model = open_clip.load_openai_model(
                    str(path), precision=build, device="cpu"
                )
            else:
                model = open_clip.create_model(name, pretrained=str(path), **kwargs)
        # a file the user handed us: truncated, not weights, a hostile pickle
        except Exception as err:
            raise WeightsNotFoundError(
                f"{path}: cannot load these weights into CLIP model {name!r}"
                f" ({type(err).__name__}: {_gist(err)}). The file may be damaged, not a"
                " weights file, or hold code (never run); check that --clip names the"
                " architecture of this file (e.g. RN50x16-quickgelu for OpenAI's"
                " RN50x16.pt)."
            ) from None
    if build == "fp32":
        model = model.float()
    model = model.to(device).eval()  # eval: the original left BatchNorm in train mode
    for p in model.parameters():
        p.requires_grad_(False)
    # CPU keeps NCHW: its cache bytes stay as before
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return Teacher(
        model=model,
        tokenizer=_tokenizer(name),
        crop_spec=_crop_spec(model),
        device=device,
        model_name=name,
        weights_id=weights_id,
        autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
        channels_last=channels_last,
        input_dtype=torch.float16 if build == "fp16" else torch.float32,
    )
