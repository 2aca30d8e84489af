"""`eoid cache relabel`: new prompts, gamma or verb set for a cache, from its stored
image embeddings.

Relabel writes a NEW cache folder (never edits one in place): the image embeddings are
copied, the prompts and gamma change, and the verb distributions are recomputed from the
stored float16 embeddings with the text encoder alone. The prompts are one template,
several (`--templates`: a prompt ensemble, CLIP's averaging of each HOI's text
embeddings), free-text descriptions per HOI (`--descriptions`), or templates and
descriptions together; one template is an ensemble of one and gives exactly the
single-prompt rows. A new folder keeps the old cache usable by runs that point to it; a
kill leaves only an unfinished new folder, and the same command rerun finishes it. It
also upgrades a cache of an older format (1: float16 verb rows). Rows recomputed from
float16 embeddings are close to, not equal to, what `eoid cache-teacher` (and the online
teacher) compute from the encoder's float32 embeddings. A merged cache (`eoid cache
merge`) holds no embeddings its rows came from, so it is refused: relabel its members,
then merge again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from eoid.config import TeacherConfig
from eoid.config_loading import check_value
from eoid.errors import CacheMismatchError, ConfigError
from eoid.files import file_sha256, output_folder, read_json
from eoid.pipeline.data.prompt_sets import (
    prompt_sets,
    read_descriptions,
    read_templates,
)
from eoid.pipeline.data.vocab import Vocabulary, load_vocabulary, vocabulary_from_json
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store
from eoid.teacher_cache.coordination import write_derived
from eoid.teacher_cache.distribution import pair_verb_probs
from eoid.teacher_cache.lookup import CacheReader, check_complete
from eoid.teacher_cache.schema import TeacherRows


def relabel_probs(
    image_emb: np.ndarray,
    text_emb: torch.Tensor,
    object_class: np.ndarray,
    vocab: Vocabulary,
    gamma: float,
    chunk: int = 4096,
) -> np.ndarray:
    """Verb distributions (P, V) float32 from stored embeddings (P, D) and new prompt
    embeddings.

    `chunk` rows at a time: each holds ~7 (chunk, HOIs) float32 temporaries (4096 rows
    of HICO-DET's 600 HOIs: 70 MB; a 65536-row shard at once held 1.1 GB).
    """
    valid = torch.from_numpy(vocab.teacher_valid_hois())
    out = [
        pair_verb_probs(
            torch.from_numpy(image_emb[i : i + chunk].astype(np.float32)),
            text_emb,
            torch.from_numpy(object_class[i : i + chunk].astype(np.int64)),
            valid,
            torch.from_numpy(vocab.hoi_to_verb),
            vocab.num_verbs,
            gamma,
        ).numpy()
        for i in range(0, len(image_emb), chunk)
    ]
    return np.concatenate(out) if out else np.zeros((0, vocab.num_verbs), np.float32)


def refuse_merged(cache: Path, manifest: dict) -> None:
    """A merged cache's rows did not come from its stored embeddings: relabel cannot
    recompute them.
    """
    if "merge" in manifest:
        members = ", ".join(str(m["path"]) for m in manifest["merge"]["members"])
        raise CacheMismatchError(
            f"{cache}: a merged cache (`eoid cache merge` of {members}); its rows "
            "were not computed from its stored embeddings, so relabel cannot "
            "recompute them. Relabel each member, then merge the relabelled caches."
        )


def _gamma_value(gamma: float | str) -> float | str:
    """--gamma as given on the command line: "model" or a number (a ConfigError
    otherwise).
    """
    try:
        value: float | str = gamma if gamma == "model" else float(gamma)
    except ValueError:
        value = str(gamma)
    check_value(TeacherConfig, "gamma", value, "--gamma")
    return value


def _prompt_choice(
    reader: CacheReader,
    vocab: Vocabulary,
    template: str | None,
    templates: Path | None,
    descriptions: Path | None,
) -> tuple[str | list[str], list[list[str]], str | None]:
    """(the fingerprint's template: one string or the list; the prompt sets per HOI;
    the sha256 of the descriptions file or None). No prompt option keeps the cache's
    own prompt sets."""
    old = reader.fingerprint
    if template is not None and templates is not None:
        raise ConfigError("relabel: give --template or --templates FILE, not both.")
    if template is None and templates is None and descriptions is None:
        if vocab.fingerprint() == old["vocabulary"]:
            meta = read_json(reader.path / "meta.json", CacheMismatchError)
            stored = meta.get("prompt_sets") or [[p] for p in reader.prompts]
            return old["template"], stored, old.get("descriptions_sha256")
        if old.get("descriptions_sha256"):
            raise ConfigError(
                f"{reader.path}: its prompts include descriptions of its own"
                " vocabulary's HOIs; for another vocabulary pass --descriptions (and"
                " --templates) again."
            )
        listed = (
            [old["template"]]
            if isinstance(old["template"], str)
            else list(old["template"])
        )
    elif template is not None:
        check_value(TeacherConfig, "template", template, "--template")
        listed = [template]
    else:
        listed = read_templates(templates) if templates is not None else []
    described = (
        read_descriptions(descriptions, vocab) if descriptions is not None else None
    )
    chosen: str | list[str] = listed[0] if len(listed) == 1 else listed
    return (
        chosen,
        prompt_sets(vocab, listed, described),
        None if descriptions is None else file_sha256(Path(descriptions)),
    )


def _require_templates_fit(
    teacher, vocab: Vocabulary, chosen: str | list[str], source: Path | None
) -> None:
    """Each template, filled for every HOI, fits the text tower's context (else it is
    cut silently).
    """
    for template in [chosen] if isinstance(chosen, str) else chosen:
        found = teacher.overlong(vocab.prompts(template))
        if found:
            where = f"{source}: " if source else ""
            raise ConfigError(
                f"{where}template {template!r} fills to {found[1]} tokens (e.g."
                f" {found[0]!r}); the text tower of {teacher.model_name} reads"
                f" {teacher.context_length}, so {{verb_ing}} / {{object}} would be cut"
                " off and HOIs would share one text. Shorten the template."
            )


def run_relabel(
    cache: Path,
    out: Path,
    template: str | None = None,
    gamma: float | str | None = None,
    dataset: str | None = None,
    weights: str | None = None,
    device: str = "cpu",
    templates: Path | None = None,
    descriptions: Path | None = None,
) -> Path:
    """A new cache at `out` with new prompts / gamma / verb set, from `cache`'s image
    embeddings.

    template: one template; templates: a file of several; descriptions: a JSON file of
    texts per HOI (prompt_sets.py); none of them keeps the cache's prompts. gamma: a
    number, "model" (the weights' logit_scale.exp()), or None to keep the cache's. A
    format-1 cache is read too.
    """
    from eoid.teacher_cache.ensemble import encode_prompt_sets
    from eoid.teacher_cache.teacher import load_teacher, resolve_gamma

    out = output_folder(
        Path(out),
        "the relabelled cache",
        inputs=[cache],
        owner="cache relabel",
        marker=store.MARKER,
        signs=mf.CACHE_SIGNS,
    )
    gamma = None if gamma is None else _gamma_value(gamma)
    # before reading the arrays
    refuse_merged(cache, check_complete(Path(cache), mf.RELABEL_READS))
    reader = CacheReader(cache, derive=True, formats=mf.RELABEL_READS)
    old, config = reader.fingerprint, json.loads(json.dumps(reader.manifest["config"]))
    vocab = (
        load_vocabulary(dataset)
        if dataset
        else vocabulary_from_json(reader.vocabulary, f"{cache}")
    )
    if vocab.objects != [o["name"] for o in reader.vocabulary["objects"]]:
        raise CacheMismatchError(
            f"{cache}: relabel can change verbs and HOIs, not objects; vocabulary "
            f"{dataset} has other objects. Build a new cache with `eoid cache-teacher`."
        )
    chosen, sets, described = _prompt_choice(
        reader, vocab, template, templates, descriptions
    )
    teacher = load_teacher(
        config["teacher"]["model"], weights or config["teacher"]["weights"], device
    )
    if teacher.weights_id != old["weights"]:
        raise CacheMismatchError(
            f"{cache}: the image embeddings come from weights {old['weights']}, "
            f"the text encoder given is {teacher.weights_id}. Pass --clip-weights "
            "with the file the cache was built with."
        )
    _require_templates_fit(teacher, vocab, chosen, templates)
    resolved = old["gamma"] if gamma is None else resolve_gamma(gamma, teacher)
    text_emb = encode_prompt_sets(teacher, sets)
    fingerprint = {
        **old,
        "format_version": mf.FORMAT_VERSION,
        "template": chosen,
        "gamma": resolved,
        "vocabulary": vocab.fingerprint(),
        "prompts_sha256": mf.prompts_sha256(sets),
        "excluded_verbs": [vocab.verbs[i] for i in vocab.teacher_excluded_verbs],
    }
    fingerprint.pop("descriptions_sha256", None)
    if described:
        fingerprint["descriptions_sha256"] = described
    config["teacher"].update(
        template=chosen, gamma=config["teacher"]["gamma"] if gamma is None else gamma
    )
    if dataset:
        config["data"]["dataset"] = dataset
    meta = {
        "image_keys": reader.image_keys,
        "image_sizes": reader.image_sizes,
        "prompts": [texts[0] for texts in sets],
        "vocabulary": vocab.to_json(),
    }
    if any(len(texts) > 1 for texts in sets):
        # every text; "prompts" keeps the first of each set
        meta["prompt_sets"] = sets
    new_prompts = (
        template is not None or templates is not None or descriptions is not None
    )
    manifest = {
        **{
            k: v
            for k, v in reader.manifest.items()
            if k != "checksums" and not (new_prompts and k == "prompt_files")
        },
        "format_version": mf.FORMAT_VERSION,
        "fingerprint": fingerprint,
        "config": config,
        "num_labelled_pairs": int(reader.labelled.sum()),
        "relabelled_from": str(cache),
    }
    prompt_files = {
        k: str(v)
        for k, v in (("templates", templates), ("descriptions", descriptions))
        if v
    }
    if prompt_files:
        manifest["prompt_files"] = prompt_files

    def rows(lo: int, hi: int) -> TeacherRows:
        """The cache's teacher columns of rows lo:hi, verb_probs recomputed from
        image_emb.
        """
        copied = reader.teacher_rows(lo, hi)
        probs = relabel_probs(
            copied["image_emb"], text_emb, reader.object_class[lo:hi], vocab, resolved
        )
        return {**copied, "verb_probs": probs}

    return write_derived(
        out, reader.plan(), reader.layout, text_emb.numpy(), meta, manifest, rows
    )
