"""One frozen dataclass per phase, filled from TOML; unknown keys and wrong types are refused.

Precedence: the defaults, then `--config file.toml`, then named flags, then `--set section.key=value`.
No torch import here: the CLI loads configs before it pays for torch.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Mapping, TypeVar, get_args, get_origin, get_type_hints

from eoid.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "hico-det"        # vocabulary: "hico-det", "v-coco", or a vocabulary JSON file
    train_annotations: str = ""      # training annotation file (HICO-DET JSON / anno_bbox.mat / V-COCO JSON)
    train_images: str = ""           # folder holding the training images
    test_annotations: str = ""       # test annotation file, evaluated at the end of training
    test_images: str = ""            # folder holding the test images
    setting: str = ""                # zero-shot setting ("ua", "uc0".."uc4", "rf-uc", ...); "" = supervised
    # "all": every human x other box with no seen label (paper); "annotated": annotated HOIs' boxes
    # (original); "none": labelled pairs only, so stage 2 never runs (CDN)
    unknown_pairs: str = "all"
    val_images: int = 0              # training images held out for model selection (0 = none, use last epoch)
    val_seed: int = 0                # seed of the validation split
    skip_bad: bool = False           # skip bad records (counted, in bad_records.json) instead of stopping
    max_boxes: int = 64              # boxes kept per training image, labels past them skipped (original: 64)


@dataclass(frozen=True)
class AugmentConfig:
    # DETR-style flip / colour jitter / multi-scale resize / crop
    enabled: bool = True
    # shorter side choices, px
    scales: tuple[int, ...] = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
    max_size: int = 1333                                  # longest side after resize, px
    crop_scales: tuple[int, ...] = (400, 500, 600)        # shorter side before the random crop, px
    crop_min: int = 384                                   # random crop side range, px
    crop_max: int = 600
    test_size: int = 800                                  # shorter side at test time, px
    color_jitter: float = 0.4                             # brightness/contrast/saturation jitter strength


@dataclass(frozen=True)
class TeacherConfig:
    model: str = "RN50x16"           # open_clip model name (e.g. RN50x16-quickgelu for OpenAI weights)
    weights: str = "openai"          # open_clip pretrained tag or a local weights file
    # HOI prompt; {verb_ing} and {object} are filled in
    template: str = "a picture of person {verb_ing} {object}"
    # softmax scale of the cosine similarity: a number, or "model" = the weights' own
    # logit_scale.exp() (the original's rule: 100 for OpenAI's CLIP, 15.92 for eoid-synth-clip)
    gamma: float | str = 100.0
    batch_size: int = 64             # crops per image-encoder call
    num_workers: int = 2             # DataLoader workers that decode and crop
    # "fp16" (float16 weights, the original's clip.load on CUDA), "bf16" (autocast), "fp32";
    # "auto" = fp16 on a GPU; a CPU always runs fp32
    precision: str = "auto"
    min_iou: float = 0.5             # lookup: min(IoU human, IoU object) for a cached pair to match
    shard_rows: int = 65536          # pairs per zarr shard (one writer per shard)


@dataclass(frozen=True)
class StudentConfig:
    preset: str = "cdn-s"                 # "cdn-s", "cdn-b", "cdn-l" or "tiny" (CPU tests)
    num_queries: int = 64                 # decoder queries
    is_head: str = "interaction"          # interactive-score head placement: "interaction" or "human_object"
    detach: bool = True                   # stop gradients from interaction decoder into human-object decoder
    dropout: float = -1.0                 # transformer dropout; negative = the preset's (0.1 CDN, 0 tiny)
    backbone_weights: str = ""            # local torchvision ResNet state dict ("" = random init)
    detr_init: str = ""                   # local DETR-R50 COCO checkpoint to initialise from ("" = none)
    detr_init_interaction: bool = True    # also init the interaction decoder from DETR's (original: random)


@dataclass(frozen=True)
class MatcherConfig:
    cost_box_l1: float = 2.5   # weight of L1 between cxcywh boxes (normalised coordinates)
    cost_giou: float = 1.0     # weight of (1 - GIoU)
    cost_object: float = 1.0   # weight of (1 - p(object class))
    cost_verb: float = 1.0     # weight of the verb cost; stage 1 (labelled pairs) only
    topk: int = 3              # at most this many unknown pairs trained per image
    thres_is: float = 0.5      # interactive probability a potential pair must exceed
    is_iou: float = 0.5        # IoU (both boxes) a prediction needs with its pair to count as interactive


@dataclass(frozen=True)
class LossConfig:
    object_ce: float = 1.0           # weight of the object-class cross entropy
    no_object_weight: float = 0.1    # class weight of "no object" in that cross entropy
    box_l1: float = 2.5              # weight of the L1 box loss (human and object)
    giou: float = 1.0                # weight of the GIoU loss (human and object)
    verb_focal: float = 1.6          # weight of the focal verb loss on hard (0/1) targets
    focal_alpha: float = 0.5         # focal loss alpha
    focal_gamma: float = 2.0         # focal loss gamma
    distill: float = 700.0           # weight of the BCE on soft teacher targets (0 = no distillation)
    # "tensor": sum / (batch x queries x verbs), the original (relative to the focal term its
    # strength scales with labels per image / (queries x verbs), not with the batch);
    # "pairs": sum / matched pairs
    distill_norm: str = "tensor"
    interactive: float = 1.0         # weight of the interactive-score cross entropy (0 = no IS term)
    # IS targets: "overlap": every query reaching (matcher.is_iou) a labelled pair without
    # no_interaction, plus the selected unknown matches (the original code); "matched": only a
    # trained query reaching its own interactive or unknown pair (the paper's text)
    is_positives: str = "matched"
    a_u_only: bool = False           # keep teacher mass on unseen verbs only (the paper's "A_U only", UA)
    # teacher fills pairs labelled only no_interaction too (the original); false keeps their 0s
    teacher_on_no_interaction: bool = True


@dataclass(frozen=True)
class OptimConfig:
    epochs: int = 90             # training epochs
    lr: float = 1e-4             # AdamW learning rate of everything but the backbone
    lr_backbone: float = 1e-5    # AdamW learning rate of the backbone
    weight_decay: float = 1e-4   # AdamW weight decay
    lr_drop: int = 60            # epoch at which the learning rate is multiplied by 0.1
    clip_max_norm: float = 0.1   # gradient clipping (max norm; 0 = off)
    batch_size: int = 4          # images per process (per GPU)
    num_workers: int = 2         # DataLoader workers per process
    seed: int = 42               # base seed; each rank adds its rank
    amp: bool = True             # bf16 autocast on GPU (ignored on CPU)
    eval_every: int = 5          # evaluate on the validation split every K epochs
    max_iters: int = 0           # stop after this many iterations in total (0 = run all epochs; for tests)


@dataclass(frozen=True)
class PostprocessConfig:
    top_k: int = 100                       # triplets kept per image
    use_nms: bool = True                   # CDN's triplet NMS
    nms_threshold: float = 0.7             # suppress when IoU_h^alpha * IoU_o^beta exceeds this
    nms_alpha: float = 1.0                 # exponent of the human IoU in the NMS overlap
    nms_beta: float = 0.5                  # exponent of the object IoU in the NMS overlap
    use_interactive_score: bool = False    # multiply the triplet score by the interactive score


@dataclass(frozen=True)
class CacheConfig:
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    out: str = ""                    # cache folder to write
    part: str = ""                   # "i/n": this job-array part of the images ("" = all, or torchrun's rank)
    break_lock: bool = False         # remove a stale lock left by a dead process
    seed: int = 0                    # seed (the teacher is deterministic; kept for the sampling fingerprint)


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    post: PostprocessConfig = field(default_factory=PostprocessConfig)
    cache: str = ""                  # teacher cache; read (and needed) only if loss.distill > 0
    online_teacher: bool = False     # run CLIP inside the loss, as the original code does
    out: str = ""                    # run folder (checkpoints, metrics.jsonl, resolved config)
    resume: bool = False             # continue the run in `out` from its last checkpoint
    break_lock: bool = False         # remove a stale lock left by a dead process


@dataclass(frozen=True)
class EvalConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    post: PostprocessConfig = field(default_factory=PostprocessConfig)
    checkpoint: str = ""             # student checkpoint ("" with predictions)
    predictions: str = ""            # saved predictions JSON to score instead of a model
    mode: str = "default"            # "default" or "known_object"
    out: str = ""                    # folder for results.json
    batch_size: int = 2              # images per forward pass


@dataclass(frozen=True)
class PredictConfig:
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    post: PostprocessConfig = field(default_factory=PostprocessConfig)
    checkpoint: str = ""             # student checkpoint
    out: str = ""                    # folder for predictions.json and drawn PNGs
    top_k: int = 10                  # triplets drawn and listed per image
    threshold: float = 0.0           # lowest triplet score listed


# ---------------------------------------------------------------- values given as text

def parse_part(text: str, flag: str = "--part") -> tuple[int, int]:
    """`i/n` (part i of n, 0-based: cluster job arrays) -> (i, n); "" -> (0, 1), the whole job."""
    if not text:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m[2]) < 1 or int(m[1]) >= int(m[2]):
        raise ConfigError(f"{flag} {text!r}: expected i/n with 0 <= i < n, e.g. {flag} 0/4")
    return int(m[1]), int(m[2])


def require_path(value: str, what: str, flag: str) -> Path:
    """A required path option; empty is a ConfigError that names the flag."""
    if not value:
        raise ConfigError(f"no {what} given: pass {flag} (or set it in the --config TOML).")
    return Path(value)


# ---------------------------------------------------------------- strict loading

def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a field's type hint, converting TOML arrays to tuples."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in get_args(hint):
            if arm is type(None) and value is None:
                return None
            try:
                return _coerce(value, arm, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a {hint}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arm, *_rest) = get_args(hint)
        return tuple(_coerce(v, arm, where) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint}")


def from_dict(cls: type[T], raw: Mapping[str, Any], where: str) -> T:
    """Build config dataclass `cls` from parsed TOML; unknown keys or bad types: ConfigError."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {raw!r}")
    names = {f.name for f in fields(cls)}
    for key in sorted(raw.keys() - names):
        near = get_close_matches(key, names, n=1)
        tip = f"did you mean {near[0]!r}?" if near else f"valid keys: {sorted(names)}"
        raise ConfigError(f"{where}: unknown key {key!r}; {tip}")
    hints = get_type_hints(cls)
    return cls(**{k: (from_dict(hints[k], v, f"{where} [{k}]") if is_dataclass(hints[k])
                      else _coerce(v, hints[k], f"{where} {k}"))
                  for k, v in raw.items()})


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain nested dicts and lists (for TOML, JSON and checkpoints)."""
    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v
    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()} if not is_dataclass(cfg) else {
        f.name: (to_dict(getattr(cfg, f.name)) if is_dataclass(getattr(cfg, f.name))
                 else plain(getattr(cfg, f.name))) for f in fields(cfg)}


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """`section.key=value` (value in TOML syntax, bare words taken as strings) -> nested dict."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set loss.distill=500")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    node: dict[str, Any] = {}
    cur = node
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = parsed
    return node


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML recipe; a missing file or bad syntax is a ConfigError naming the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found. Pass an existing --config file.") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err}). Fix the syntax and rerun.") from None


def load_config(cls: type[T], path: Path | str | None = None, overrides: tuple[str, ...] = (),
                under: Mapping[str, Any] | None = None, **flags: Any) -> T:
    """Defaults < `under` < TOML file (with `base = "other.toml"` chains) < named flags < --set.

    `under`: raw sections that replace the dataclass defaults (e.g. a checkpoint's recipe);
    `flags` use dotted names as keys with `__` for the dot (e.g. `data__setting="ua"`);
    a flag whose value is None is not applied.
    """
    raw: dict[str, Any] = copy.deepcopy(dict(under or {}))
    where = "defaults" if under is None else "defaults + checkpoint recipe"
    if path is not None:
        raw = _merge(raw, _read_with_base(Path(path), depth=0))
        where = str(path)
    for name, value in flags.items():
        if value is None:
            continue
        node = raw
        parts = name.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    for text in overrides:
        raw = _merge(raw, parse_override(text))
        where = f"{where} + --set"
    return from_dict(cls, raw, where)


def _read_with_base(path: Path, depth: int) -> dict[str, Any]:
    """Read a recipe; a top-level `base = "file.toml"` (relative to it) is read first and overridden."""
    if depth > 8:
        raise ConfigError(f"{path}: `base` chain deeper than 8 files; is there a loop?")
    raw = read_toml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: `base` must be a file name, got {base!r}")
    return _merge(_read_with_base(path.parent / base, depth + 1), raw)


def dumps_toml(cfg: Any) -> str:
    """The resolved config as TOML text (written next to every output)."""
    d = to_dict(cfg)
    top = {k: v for k, v in d.items() if not isinstance(v, dict)}
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")
