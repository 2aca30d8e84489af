"""One frozen dataclass per phase and per section of a recipe, with the defaults and,
as a comment on each field, its meaning (eoid.config_reference turns them into
docs/config-reference.md).

Filling them from TOML, flags and `--set`, and refusing unknown keys, wrong types and
out-of-range values, is eoid.config_loading's. No torch import here: the CLI loads
configs before it pays for torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# re-exported: at home in config_values
from eoid.config_values import dumps_toml as dumps_toml

# re-exported: used with the configs
from eoid.config_values import parse_part as parse_part
from eoid.config_values import require_path as require_path  # re-exported
from eoid.config_values import to_dict as to_dict  # re-exported


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
