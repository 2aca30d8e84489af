"""One frozen dataclass per phase, filled from TOML; unknown keys and wrong types are
refused.

Precedence: the defaults, then `--config file.toml`, then named flags, then `--set
section.key=value`. No torch import here: the CLI loads configs before it pays for
torch.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar, get_type_hints

from eoid.config_values import (
    Check,
    Sources,
    above_up_to,
    at_least,
    below,
    between,
    coerce,
    gamma_problem,
    merge,
    one_of,
    parse_override,
    part_problem,
    shown,
    sizes,
    template_problem,
)

# re-exported: at home in config_values
from eoid.config_values import dumps_toml as dumps_toml

# re-exported: used with the configs
from eoid.config_values import parse_part as parse_part
from eoid.config_values import require_path as require_path  # re-exported
from eoid.config_values import to_dict as to_dict  # re-exported
from eoid.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    # vocabulary: "hico-det", "v-coco", or a vocabulary JSON file
    dataset: str = "hico-det"
    # training annotation file (HICO-DET JSON / anno_bbox.mat / V-COCO JSON)
    train_annotations: str = ""
    train_images: str = ""  # folder holding the training images
    # test annotation file, evaluated at the end of training
    test_annotations: str = ""
    test_images: str = ""  # folder holding the test images
    # zero-shot setting ("ua", "uc0".."uc4", "rf-uc", ...); "" = supervised
    setting: str = ""
    # "all": every human x other box with no seen label (paper); "annotated": annotated
    # HOIs' boxes (original); "none": labelled pairs only, so stage 2 never runs (CDN)
    unknown_pairs: str = "all"
    # training images held out for model selection (0 = none, use last epoch)
    val_images: int = 0
    # with val_images = 0: hold out this share instead (at least 1 image)
    val_fraction: float = 0.0
    val_seed: int = 0  # seed of the validation split
    # skip bad records (counted, in bad_records.json) instead of stopping
    skip_bad: bool = False
    # boxes kept per training image, labels past them skipped (original: 64)
    max_boxes: int = 64
    # share of the training images trained on: a subset seeded by optim.seed
    fraction: float = 1.0


@dataclass(frozen=True)
class AugmentConfig:
    # DETR-style flip / colour jitter / multi-scale resize / crop
    enabled: bool = True
    # shorter side choices, px
    scales: tuple[int, ...] = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
    # longest side after resize, px
    max_size: int = 1333
    # shorter side before the random crop, px
    crop_scales: tuple[int, ...] = (400, 500, 600)
    # random crop side range, px: smallest
    crop_min: int = 384
    crop_max: int = 600  # largest random crop side, px
    # shorter side at test time, px
    test_size: int = 800
    # brightness/contrast/saturation jitter strength
    color_jitter: float = 0.4


@dataclass(frozen=True)
class TeacherConfig:
    # open_clip model name (e.g. RN50x16-quickgelu for OpenAI weights)
    model: str = "RN50x16"
    weights: str = "openai"  # open_clip pretrained tag or a local weights file
    # HOI prompt; {verb_ing} and {object} are filled in
    template: str = "a picture of person {verb_ing} {object}"
    # softmax scale of the cosine similarity: a number, or "model" = the weights' own
    # logit_scale.exp() (the original's rule: 100 for OpenAI's CLIP, 15.92 for
    # eoid-synth-clip)
    gamma: float | str = 100.0
    batch_size: int = 64  # crops per image-encoder call
    num_workers: int = 2  # DataLoader workers that decode and crop
    # "fp16" (float16 weights, the original's clip.load on CUDA), "bf16" (autocast),
    # "fp32"; "auto" = fp16 on a GPU; a CPU always runs fp32
    precision: str = "auto"
    # lookup: min(IoU human, IoU object) for a cached pair to match
    min_iou: float = 0.5
    shard_rows: int = 65536  # pairs per zarr shard (one writer per shard)


@dataclass(frozen=True)
class StudentConfig:
    # "cdn-s", "cdn-b", "cdn-l" or "tiny" (CPU tests)
    preset: str = "cdn-s"
    num_queries: int = 64  # decoder queries
    # interactive-score head placement: "interaction", "human_object" or "none" (CDN's
    # weights; no training)
    is_head: str = "interaction"
    # stop gradients from interaction decoder into human-object decoder
    detach: bool = True
    # transformer dropout; negative = the preset's (0.1 CDN, 0 tiny)
    dropout: float = -1.0
    # local torchvision ResNet state dict ("" = random init)
    backbone_weights: str = ""
    # local DETR-R50 COCO checkpoint to initialise from ("" = none)
    detr_init: str = ""
    # also init the interaction decoder from DETR's (original: random)
    detr_init_interaction: bool = True
    # eoid checkpoint whose weights start this run, e.g. from `eoid import-checkpoint` ("" = none);
    # same vocabulary, preset and queries; a head it lacks (CDN: the IS head) keeps its fresh init
    init_from: str = ""


@dataclass(frozen=True)
class MatcherConfig:
    # weight of L1 between cxcywh boxes (normalised coordinates)
    cost_box_l1: float = 2.5
    cost_giou: float = 1.0  # weight of (1 - GIoU)
    cost_object: float = 1.0  # weight of (1 - p(object class))
    cost_verb: float = 1.0  # weight of the verb cost; stage 1 (labelled pairs) only
    topk: int = 3  # at most this many unknown pairs trained per image
    thres_is: float = 0.5  # interactive probability a potential pair must exceed
    # IoU (both boxes) a prediction needs with its pair to count as interactive
    is_iou: float = 0.5


@dataclass(frozen=True)
class LossConfig:
    object_ce: float = 1.0  # weight of the object-class cross entropy
    no_object_weight: float = 0.1  # class weight of "no object" in that cross entropy
    box_l1: float = 2.5  # weight of the L1 box loss (human and object)
    giou: float = 1.0  # weight of the GIoU loss (human and object)
    # weight of the focal verb loss on hard (0/1) targets
    verb_focal: float = 1.6
    focal_alpha: float = 0.5  # focal loss alpha
    focal_gamma: float = 2.0  # focal loss gamma
    # weight of the BCE on soft teacher targets (0 = no distillation)
    distill: float = 700.0
    # "tensor": sum / (batch x queries x verbs), the original (relative to the focal
    # term its strength scales with labels per image / (queries x verbs), not with the
    # batch); "pairs": sum / matched pairs
    distill_norm: str = "tensor"
    # weight of the interactive-score cross entropy (0 = no IS term)
    interactive: float = 1.0
    # IS targets: "overlap": every query reaching (matcher.is_iou) a labelled pair
    # without no_interaction, plus the selected unknown matches (the original code, and
    # so the default); "matched": only a trained query reaching its own interactive or
    # unknown pair (the paper's text)
    is_positives: str = "overlap"
    # keep teacher mass on unseen verbs only (the paper's "A_U only", UA)
    a_u_only: bool = False
    # teacher fills pairs labelled only no_interaction too (the original); false keeps
    # their 0s
    teacher_on_no_interaction: bool = True


@dataclass(frozen=True)
class OptimConfig:
    epochs: int = 90  # training epochs
    lr: float = 1e-4  # AdamW learning rate of everything but the backbone
    lr_backbone: float = 1e-5  # AdamW learning rate of the backbone
    weight_decay: float = 1e-4  # AdamW weight decay
    lr_drop: int = 60  # epoch at which the learning rate is multiplied by 0.1
    clip_max_norm: float = 0.1  # gradient clipping (max norm; 0 = off)
    batch_size: int = 4  # images per process (per GPU)
    num_workers: int = 2  # DataLoader workers per process
    seed: int = 42  # base seed; each rank adds its rank
    amp: bool = True  # bf16 autocast on GPU (ignored on CPU)
    eval_every: int = 5  # evaluate on the validation split every K epochs
    # stop after this many iterations in total (0 = run all epochs; for tests)
    max_iters: int = 0


@dataclass(frozen=True)
class PostprocessConfig:
    top_k: int = 100  # triplets kept per image
    use_nms: bool = True  # CDN's triplet NMS
    # suppress when IoU_h^alpha * IoU_o^beta exceeds this
    nms_threshold: float = 0.7
    # exponent of the human IoU in the NMS overlap
    nms_alpha: float = 1.0
    # exponent of the object IoU in the NMS overlap
    nms_beta: float = 0.5
    # multiply the triplet score by the interactive score
    use_interactive_score: bool = False


@dataclass(frozen=True)
class VerbsConfig:
    # verb scores of each predicted pair: "student" (alone), "clip" (the teacher on the
    # pair's union crop, Table 2) or "blend" (student^(1 - blend_weight) *
    # clip^blend_weight, as HOICLIP adds CLIP)
    classifier: str = "student"
    # blend: CLIP's share w in [0, 1]; 0 = the student, 1 = CLIP
    blend_weight: float = 0.5
    # clip, blend: CLIP's softmax over the predicted object's HOIs
    prior: bool = True


@dataclass(frozen=True)
class CacheConfig:
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    out: str = ""  # cache folder to write
    # "i/n": this job-array part of the images ("" = all, or torchrun's rank)
    part: str = ""
    break_lock: bool = False  # remove a stale lock left by a dead process
    # seed (the teacher is deterministic; kept for the sampling fingerprint)
    seed: int = 0


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
    # teacher cache; read (and needed) only if loss.distill > 0
    cache: str = ""
    # run CLIP inside the loss, as the original code does
    online_teacher: bool = False
    # run folder (checkpoints, metrics.jsonl, resolved config)
    out: str = ""
    # continue the run in `out` from its last checkpoint
    resume: bool = False
    # with resume: accept changed hyper-parameters (recorded in the run)
    allow_changes: bool = False
    break_lock: bool = False  # remove a stale lock left by a dead process


@dataclass(frozen=True)
class EvalConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    post: PostprocessConfig = field(default_factory=PostprocessConfig)
    checkpoint: str = ""  # student checkpoint ("" with predictions)
    # saved predictions JSON to score instead of a model
    predictions: str = ""
    mode: str = "default"  # "default" or "known_object"
    out: str = ""  # folder for results.json
    batch_size: int = 2  # images per forward pass
    # the student's verb scores, or CLIP's
    verbs: VerbsConfig = field(default_factory=VerbsConfig)


@dataclass(frozen=True)
class PredictConfig:
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    post: PostprocessConfig = field(default_factory=PostprocessConfig)
    checkpoint: str = ""  # student checkpoint
    # `eoid export` ONNX file run by onnxruntime, instead of checkpoint
    onnx: str = ""
    # onnxruntime execution provider for `onnx`
    onnx_provider: str = "CPUExecutionProvider"
    out: str = ""  # folder for predictions.json and drawn PNGs
    top_k: int = 10  # triplets drawn and listed per image
    threshold: float = 0.0  # lowest triplet score listed
    # the student's verb scores, or CLIP's
    verbs: VerbsConfig = field(default_factory=VerbsConfig)


# ---------------------------------------------------------------- value ranges
# from_dict checks every config it builds (a --config file, --set, flags, a checkpoint's
# recipe) against this table, so a bad value fails when it is loaded, naming the key and
# where it was set. A new field gets one line here. Every number must also be finite
# (checked for all fields).

RANGES: dict[type, dict[str, Check]] = {
    DataConfig: {
        "unknown_pairs": one_of("all", "annotated", "none"),
        "val_images": at_least(0),
        "val_fraction": between(0, 1),
        "val_seed": at_least(0),
        "max_boxes": at_least(1),
        "fraction": above_up_to(0, 1),
    },
    AugmentConfig: {
        "scales": sizes,
        "max_size": at_least(1),
        "crop_scales": sizes,
        "crop_min": at_least(1),
        "crop_max": at_least(1),
        "test_size": at_least(1),
        "color_jitter": at_least(0),
    },
    TeacherConfig: {
        "template": template_problem,
        "gamma": gamma_problem,
        "batch_size": at_least(1),
        "num_workers": at_least(0),
        "precision": one_of("auto", "fp32", "bf16", "fp16"),
        "min_iou": between(0, 1),
        "shard_rows": at_least(1),
    },
    StudentConfig: {
        "preset": one_of("cdn-s", "cdn-b", "cdn-l", "tiny"),
        "num_queries": at_least(1),
        "is_head": one_of("interaction", "human_object", "none"),
        "dropout": below(1),
    },
    MatcherConfig: {
        "cost_box_l1": at_least(0),
        "cost_giou": at_least(0),
        "cost_object": at_least(0),
        "cost_verb": at_least(0),
        "topk": at_least(0),
        "thres_is": between(0, 1),
        "is_iou": between(0, 1),
    },
    LossConfig: {
        "object_ce": at_least(0),
        "no_object_weight": at_least(0),
        "box_l1": at_least(0),
        "giou": at_least(0),
        "verb_focal": at_least(0),
        "focal_alpha": between(0, 1),
        "focal_gamma": at_least(0),
        "distill": at_least(0),
        "interactive": at_least(0),
        "distill_norm": one_of("tensor", "pairs"),
        "is_positives": one_of("overlap", "matched"),
    },
    OptimConfig: {
        "epochs": at_least(1),
        "lr": at_least(0),
        "lr_backbone": at_least(0),
        "weight_decay": at_least(0),
        "lr_drop": at_least(1),
        "clip_max_norm": at_least(0),
        "batch_size": at_least(1),
        "num_workers": at_least(0),
        "seed": at_least(0),
        "eval_every": at_least(1),
        "max_iters": at_least(0),
    },
    PostprocessConfig: {
        "top_k": at_least(1),
        "nms_threshold": between(0, 1),
        "nms_alpha": at_least(0),
        "nms_beta": at_least(0),
    },
    VerbsConfig: {
        "classifier": one_of("student", "clip", "blend"),
        "blend_weight": between(0, 1),
    },
    CacheConfig: {"part": part_problem, "seed": at_least(0)},
    EvalConfig: {"mode": one_of("default", "known_object"), "batch_size": at_least(1)},
    PredictConfig: {"top_k": at_least(1), "threshold": between(0, 1)},
}

# checks of two fields together: (section, (field, field), law, what the law says)
PAIRS: list[tuple[type, tuple[str, str], Callable[[Any, Any], bool], str]] = [
    (
        AugmentConfig,
        ("crop_min", "crop_max"),
        lambda low, high: low <= high,
        "must not exceed",
    ),
]


# ---------------------------------------------------------------- strict loading


def from_dict(
    cls: type[T], raw: Mapping[str, Any], where: str | Sources, prefix: str = ""
) -> T:
    """Build config dataclass `cls` from parsed TOML; unknown keys, bad types or ranges:
    ConfigError.

    where: the one source of every value (e.g. "x.toml [student]"), or a Sources naming
    each key's.
    """
    sources = where if isinstance(where, Sources) else Sources(where)
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{sources.where(prefix.rstrip('.'))}: expected a table, got {raw!r}"
        )
    names = {f.name for f in fields(cls)}
    for key in sorted(raw.keys() - names):
        near = get_close_matches(key, names, n=1)
        tip = f"did you mean {near[0]!r}?" if near else f"valid keys: {sorted(names)}"
        raise ConfigError(f"{sources.where(prefix + key)}: unknown key {key!r}; {tip}")
    hints = get_type_hints(cls)
    cfg = cls(
        **{
            k: (
                from_dict(hints[k], v, sources, f"{prefix}{k}.")
                if is_dataclass(hints[k])
                else coerce(v, hints[k], f"{sources.where(prefix + k)} {k}")
            )
            for k, v in raw.items()
        }
    )
    _check_ranges(cfg, sources, prefix)
    return cfg


def _check_ranges(cfg: Any, sources: Sources, prefix: str) -> None:
    """Refuse a value outside its range (RANGES, PAIRS; any non-finite number), naming
    its source.
    """
    checks = RANGES.get(type(cfg), {})
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            continue
        items = value if isinstance(value, tuple) else (value,)
        problem = (
            "must be a finite number"
            if any(isinstance(x, float) and not math.isfinite(x) for x in items)
            else None
        )
        problem = problem or (checks[f.name](value) if f.name in checks else None)
        if problem:
            raise ConfigError(
                f"{sources.of(prefix + f.name)}: {prefix}{f.name} = {shown(value)}"
                f" {problem}."
            )
    for section, (a, b), law, says in PAIRS:
        if type(cfg) is section and not law(getattr(cfg, a), getattr(cfg, b)):
            blamed = next(
                (k for k in (a, b) if sources.of(prefix + k) != sources.default), a
            )
            raise ConfigError(
                f"{sources.of(prefix + blamed)}: {prefix}{a} = {getattr(cfg, a)} {says}"
                f" {prefix}{b} = {getattr(cfg, b)}."
            )


def check_value(cls: type, name: str, value: Any, source: str) -> None:
    """Check one value of field `cls.name` given outside a config (e.g. `--gamma`):
    ConfigError naming it.
    """
    fake = Sources(source)
    section = next(
        (
            k
            for k, v in ((f.name, f.type) for f in fields(TrainConfig))
            if v == cls.__name__
        ),
        "",
    )
    _check_ranges(
        dataclasses.replace(cls(), **{name: value}),
        fake,
        f"{section}." if section else "",
    )


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML recipe; a missing file or bad syntax is a ConfigError naming the
    file.
    """
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found. Pass an existing --config file."
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"{path}: not valid TOML ({err}). Fix the syntax and rerun."
        ) from None
    except UnicodeDecodeError as err:  # tomllib reads UTF-8 only
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.start}); TOML files are UTF-8. "
            "Save it as UTF-8 and rerun."
        ) from None
    except OSError as err:  # a folder, no permission, a symlink loop, a name too long
        raise ConfigError(
            f"{path}: cannot read the config file ({err.strerror or err}). Pass a "
            "readable --config file."
        ) from None


def load_config(
    cls: type[T],
    path: Path | str | None = None,
    overrides: tuple[str, ...] = (),
    under: Mapping[str, Any] | None = None,
    under_source: str = "the checkpoint's recipe",
    **flags: Any,
) -> T:
    """Defaults < `under` < TOML file (with `base = "other.toml"` chains) < named flags
    < --set.

    `under`: raw sections that replace the dataclass defaults (e.g. a checkpoint's
    recipe, named `under_source` in messages); `flags` use dotted names as keys with
    `__` for the dot (e.g. `data__setting="ua"`); a flag whose value is None is not
    applied. An error names the one input that set the offending value.
    """
    raw: dict[str, Any] = copy.deepcopy(dict(under or {}))
    sources = Sources()
    sources.note(raw, under_source)
    if path is not None:
        raw = merge(raw, _read_with_base(Path(path), 0, sources))
    for name, value in flags.items():
        if value is None:
            continue
        node = raw
        parts = name.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        sources.note({".".join(parts): value}, f"the flag for {'.'.join(parts)}")
    for text in overrides:
        layer = parse_override(text)
        raw = merge(raw, layer)
        sources.note(layer, f"--set {text}")
    return from_dict(cls, raw, sources)


def _read_with_base(path: Path, depth: int, sources: Sources) -> dict[str, Any]:
    """Read a recipe; a top-level `base = "file.toml"` (relative to it) is read first
    and overridden.
    """
    if depth > 8:
        raise ConfigError(f"{path}: `base` chain deeper than 8 files; is there a loop?")
    raw = read_toml(path)
    base = raw.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: `base` must be a file name, got {base!r}")
    merged = (
        {} if base is None else _read_with_base(path.parent / base, depth + 1, sources)
    )
    sources.note(raw, str(path))
    return merge(merged, raw)
