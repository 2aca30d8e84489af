"""The synthetic world's teacher: a small CLIP-architecture model trained on captioned
union crops.

As CLIP learned from captioned web images, this model learns from a *separate* generated
set (the "web" stream of the world, which shows every verb, unseen ones included) whose
union crops are captioned with the prompt template, e.g. "a picture of person kicking
sports ball". The training is contrastive between crops and captions (UniCL-style: every
crop against the batch's distinct captions, every caption against its crops), with
CLIP's learnable scale. The result is an ordinary open_clip state dict (safetensors) for
the model config `eoid/data/clip_configs/eoid-synth-clip.json`, loaded like any other
CLIP weights file:

    open_clip.add_model_config("eoid/data/clip_configs")
    open_clip.create_model_and_transforms("eoid-synth-clip",
                                          pretrained="eoid/data/eoid-synth-clip.safetensors")

Crops are made by eoid/teacher_cache/crops.py, the same code the teacher cache uses.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from eoid.errors import ConfigError
from eoid.files import output_folder, write_text_atomic
from eoid.pipeline.data.vocab import Vocabulary
from eoid.pipeline.synth.scenes import Scene, sample_scenes, synth_vocabulary
from eoid.teacher_cache.crops import CropSpec, union_crops

# the shipped teacher: a ViT (patch 8, width 128, 4 layers)
MODEL_NAME = "eoid-synth-clip"
# a second architecture: a ModifiedResNet with attention pooling
RN_MODEL_NAME = "eoid-synth-clip-rn"
TEMPLATE = "a picture of person {verb_ing} {object}"


def clip_configs_dir() -> Path:
    """The folder of eoid's open_clip model configs (package data)."""
    return Path(str(resources.files("eoid.data").joinpath("clip_configs")))


def shipped_weights(model: str = MODEL_NAME) -> Path:
    """The shipped checkpoint of teacher `model` (package data)."""
    return Path(str(resources.files("eoid.data").joinpath(f"{model}.safetensors")))


def crop_spec_of(model: Any) -> CropSpec:
    """The crop preprocessing an open_clip model expects (its preprocess_cfg: size,
    mean, std).
    """
    cfg = model.visual.preprocess_cfg
    size = cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"]
    return CropSpec(
        size=int(size),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=str(cfg.get("interpolation", "bicubic")),
    )


@dataclass(frozen=True)
class PairCrops:
    """Union crops of labelled pairs with their labels."""

    crops: Tensor  # (N, 3, S, S) float16, normalised as the model expects
    labels: np.ndarray  # (N, 2) int64 (verb_idx, object_idx)


def labelled_pair_crops(scenes: list[Scene], spec: CropSpec) -> PairCrops:
    """Union crops of every labelled pair of `scenes`, preprocessed by
    teacher_cache/crops.py.
    """
    crops, labels = [], []
    for scene in scenes:
        if len(scene.hois) == 0:
            continue
        image = Image.fromarray(scene.image)
        humans, objects = (
            scene.boxes_xyxy_px[scene.hois[:, 0]],
            scene.boxes_xyxy_px[scene.hois[:, 1]],
        )
        crops.append(union_crops(image, humans, objects, spec).half())
        labels += [(int(v), int(scene.box_classes[o])) for _, o, v in scene.hois]
    return PairCrops(torch.cat(crops), np.array(labels, np.int64).reshape(-1, 2))


def build_synth_clip(
    weights: Path | None = None, seed: int = 0, model: str = MODEL_NAME
) -> tuple[Any, Any]:
    """Synthetic teacher `model` (a config in clip_configs_dir(); random init from
    `seed`, or `weights`) and its tokenizer."""
    import open_clip

    open_clip.add_model_config(str(clip_configs_dir()))
    # open_clip initialises from the global RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = open_clip.create_model(
            model, pretrained=None if weights is None else str(weights)
        )
    return built, open_clip.get_tokenizer(model)


@torch.no_grad()
def zero_shot_verbs(
    model: Any,
    tokenizer: Any,
    crops: Tensor,
    objects: np.ndarray,
    vocab: Vocabulary,
    template: str = TEMPLATE,
    batch_size: int = 256,
) -> np.ndarray:
    """Predicted verb index per crop: argmax over the crop's object's valid HOIs but
    no_interaction.

    crops: (N, 3, S, S) normalised; objects: (N,) object index. As the teacher cache
    scores: cosine against every HOI prompt, prior mask of the object's valid HOIs,
    no_interaction out.
    """
    model.eval()
    text = F.normalize(
        model.encode_text(tokenizer(vocab.prompts(template))).float(), dim=-1
    )
    hoi_verb, hoi_obj = vocab.hoi_to_verb, vocab.hoi_to_object
    allowed = hoi_obj[None, :] == np.asarray(objects)[:, None]  # (N, num_hois)
    if vocab.no_interaction is not None:
        allowed &= hoi_verb[None, :] != vocab.no_interaction
    preds = []
    for i in range(0, len(crops), batch_size):
        img = F.normalize(
            model.encode_image(crops[i : i + batch_size].float()).float(), dim=-1
        )
        sims = (img @ text.T).numpy()
        sims[~allowed[i : i + batch_size]] = -np.inf
        preds.append(hoi_verb[sims.argmax(1)])
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def measure_zero_shot_accuracy(
    model: Any,
    crops: Tensor,
    labels: np.ndarray,
    vocab: Vocabulary,
    tokenizer: Any = None,
    template: str = TEMPLATE,
) -> float:
    """Verb accuracy of `model` on union `crops` (N, 3, S, S) labelled (N, 2) (verb_idx,
    object_idx).

    Pairs labelled no_interaction are left out (the teacher distribution excludes that
    verb).
    """
    if tokenizer is None:
        import open_clip

        tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    keep = labels[:, 0] != (
        -1 if vocab.no_interaction is None else vocab.no_interaction
    )
    if not keep.any():
        return float("nan")
    pred = zero_shot_verbs(
        model,
        tokenizer,
        crops[torch.from_numpy(keep)],
        labels[keep, 1],
        vocab,
        template,
    )
    return float((pred == labels[keep, 0]).mean())


def per_verb_accuracy(
    model: Any, tokenizer: Any, data: PairCrops, vocab: Vocabulary
) -> dict[str, float]:
    """Zero-shot accuracy per verb name (no_interaction left out)."""
    pred = zero_shot_verbs(model, tokenizer, data.crops, data.labels[:, 1], vocab)
    out = {}
    for v, name in enumerate(vocab.verbs):
        sel = data.labels[:, 0] == v
        if sel.any() and v != vocab.no_interaction:
            out[name] = float((pred[sel] == v).mean())
    return out


def _contrastive_loss(img: Tensor, text: Tensor, hoi: Tensor, scale: Tensor) -> Tensor:
    """UniCL loss: each crop against the batch's distinct captions, each caption against
    its crops.

    img (B, D), text (T, D) unit length; hoi (B,) caption index of each crop in 0..T-1.
    """
    logits = scale * img @ text.T  # (B, T)
    present = torch.unique(hoi)
    to_text = F.cross_entropy(logits[:, present], torch.searchsorted(present, hoi))
    positive = (hoi[None, :] == present[:, None]).float()  # (T', B)
    to_image = -(positive * F.log_softmax(logits[:, present].T, dim=1)).sum(
        1
    ) / positive.sum(1)
    return (to_text + to_image.mean()) / 2


def train_synth_teacher(
    out: Path,
    seed: int = 0,
    steps: int = 500,
    *,
    model_name: str = MODEL_NAME,
    num_web_images: int = 3000,
    num_eval_images: int = 300,
    batch_size: int = 128,
    lr: float = 1e-3,
    image_size: int = 160,
    progress: bool = True,
) -> dict:
    """Train teacher `model_name` on the world's "web" stream, save `out` (.safetensors,
    fp16) + provenance.

    Reproducible for a seed (data, init and batch order come from it). Writes `out` and
    `out.with_suffix(".json")` (seed, steps, held-out zero-shot accuracy overall and per
    verb, date, command), and returns that provenance dict.
    """
    from safetensors.torch import save_file

    out = Path(out)
    require_own_weights(out)
    output_folder(out.parent, "the weights file's folder")
    started = time.time()
    vocab = synth_vocabulary()
    model, tokenizer = build_synth_clip(seed=seed, model=model_name)
    spec = crop_spec_of(model)
    web = labelled_pair_crops(
        list(
            tqdm(
                sample_scenes(num_web_images, seed, "web", image_size),
                total=num_web_images,
                desc="web crops",
                disable=not progress,
            )
        ),
        spec,
    )
    hoi_index = vocab.hoi_index()
    hoi = torch.from_numpy(hoi_index[web.labels[:, 0], web.labels[:, 1]])
    tokens = tokenizer(vocab.prompts(TEMPLATE))
    rng = np.random.default_rng([seed, 7])
    decay = [
        p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n
    ]
    rest = [
        p
        for n, p in model.named_parameters()
        if not (p.ndim >= 2 and "embedding" not in n)
    ]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": 0.05},
            {"params": rest, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.98),
    )
    warmup = max(1, steps // 20)
    model.train()
    bar = tqdm(range(steps), desc="teacher", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = (
                lr
                * min(1.0, (step + 1) / warmup)
                * 0.5
                * (1 + math.cos(math.pi * step / steps))
            )
        idx = torch.from_numpy(
            rng.choice(len(hoi), size=min(batch_size, len(hoi)), replace=False)
        )
        crops = web.crops[idx].float()
        # verbs are left-right symmetric
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        crops[flip] = crops[flip].flip(-1)
        batch_hoi = hoi[idx]
        present = torch.unique(batch_hoi)
        img = F.normalize(model.encode_image(crops), dim=-1)
        text = torch.zeros(len(tokens), img.shape[1])
        text[present] = F.normalize(model.encode_text(tokens[present]), dim=-1)
        loss = _contrastive_loss(img, text, batch_hoi, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    save_file(
        {k: v.detach().half().contiguous() for k, v in model.state_dict().items()},
        str(out),
    )
    # what ships: fp16, reloaded
    shipped, tokenizer = build_synth_clip(weights=out, model=model_name)
    held = labelled_pair_crops(
        list(sample_scenes(num_eval_images, seed, "held_out", image_size)), spec
    )
    provenance = {
        "model": model_name,
        "weights": out.name,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "num_web_images": num_web_images,
        "num_web_pairs": int(len(hoi)),
        "image_size": image_size,
        "template": TEMPLATE,
        "crop_spec": spec.to_json(),
        "zero_shot_accuracy": measure_zero_shot_accuracy(
            shipped, held.crops, held.labels, vocab, tokenizer
        ),
        "zero_shot_accuracy_per_verb": per_verb_accuracy(
            shipped, tokenizer, held, vocab
        ),
        "held_out": {
            "stream": "held_out",
            "images": num_eval_images,
            "pairs_scored": int((held.labels[:, 0] != vocab.no_interaction).sum()),
            "chance": chance_accuracy(held.labels, vocab),
        },
        "ua_unseen_verbs": [vocab.verbs[v] for v in vocab.unseen_verbs("ua")],
        "command": (
            f"eoid synth-teacher --out {out} --seed {seed} --steps {steps}"
            + ("" if model_name == MODEL_NAME else f" --model {model_name}")
        ),
        "date": datetime.date.today().isoformat(),
        "train_seconds": round(time.time() - started, 1),
        "torch": torch.__version__,
    }
    write_text_atomic(
        out.with_suffix(".json"),
        json.dumps(provenance, indent=1),
        "the provenance file",
    )
    return provenance


def require_own_weights(out: Path) -> None:
    """Refuse to overwrite a weights file (or its .json) that synth-teacher did not
    write.

    A file written by synth-teacher has its provenance beside it (OUT.json with its seed
    and steps), and retraining over it is the documented way to reproduce the shipped
    teacher.
    """
    sidecar = out.with_suffix(".json")
    if not (out.exists() or sidecar.exists()):
        return
    try:
        provenance = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        provenance = None
    if not (
        isinstance(provenance, dict) and {"seed", "steps", "model"} <= provenance.keys()
    ):
        found = out if out.exists() else sidecar
        raise ConfigError(
            f"{found} already exists and was not written by `eoid synth-teacher` (no"
            f" provenance in {sidecar.name}); choose another --out (nothing was"
            " overwritten)."
        )


def chance_accuracy(labels: np.ndarray, vocab: Vocabulary) -> float:
    """Expected accuracy of a uniform guess among the object's valid verbs
    (no_interaction out).
    """
    valid = vocab.valid.copy()
    if vocab.no_interaction is not None:
        valid[:, vocab.no_interaction] = False
    keep = labels[:, 0] != (
        -1 if vocab.no_interaction is None else vocab.no_interaction
    )
    return (
        float(np.mean(1.0 / valid[labels[keep, 1]].sum(1)))
        if keep.any()
        else float("nan")
    )
