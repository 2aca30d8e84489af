"""`eoid cache-teacher` and the `eoid cache` tools (inspect, verify, relabel, merge,
export): click only.
"""

from __future__ import annotations

import click

from eoid.cli_options import (
    PATH,
    EoidCommand,
    EoidGroup,
    as_text,
    config_option,
    saved_on_stop,
    set_option,
    user_errors,
    world_from_env,
)
from eoid.config import CacheConfig
from eoid.config_loading import load_config


@click.command("cache-teacher", cls=EoidCommand)
@config_option
@click.option(
    "--dataset",
    help="Vocabulary: hico-det, v-coco or a vocabulary JSON. Default hico-det.",
)
@click.option(
    "--annotations", type=PATH, help="Training annotations, e.g. trainval_hico.json."
)
@click.option(
    "--images", type=PATH, help="Folder of the training images, e.g. images/train2015."
)
@click.option(
    "--clip",
    help="open_clip model name, e.g. RN50x16 (RN50x16-quickgelu for OpenAI weights).",
)
@click.option(
    "--clip-weights",
    help="open_clip pretrained tag or local weights file: openai|PATH.",
)
@click.option("--out", type=PATH, help="Cache folder to write, e.g. teacher_cache/.")
@click.option(
    "--part", help="i/n: write only part i of n (cluster job arrays), e.g. 0/8."
)
@click.option(
    "--skip-bad",
    is_flag=True,
    default=None,
    help="Skip bad records (listed in bad_records.json).",
)
@click.option(
    "--break-lock",
    is_flag=True,
    default=None,
    help="Remove a stale lock left by a dead process.",
)
@set_option
@user_errors
@saved_on_stop()
def cache_teacher(
    config_path,
    dataset,
    annotations,
    images,
    clip,
    clip_weights,
    out,
    part,
    skip_bad,
    break_lock,
    overrides,
) -> None:
    """Run the CLIP teacher once over every candidate pair and write the teacher cache."""
    cfg = load_config(
        CacheConfig,
        config_path,
        overrides,
        data__dataset=dataset,
        data__train_annotations=as_text(annotations),
        data__train_images=as_text(images),
        teacher__model=clip,
        teacher__weights=clip_weights,
        out=as_text(out),
        part=part,
        data__skip_bad=skip_bad,
        break_lock=break_lock,
    )
    from eoid.pipeline.run_cache import run_cache

    click.echo(f"teacher cache: {run_cache(cfg, world_from_env())}")


@click.group("cache", cls=EoidGroup)
def cache_group() -> None:
    """Inspect, verify, relabel, merge and export teacher caches."""


@cache_group.command("inspect")
@click.argument("cache", type=PATH)
@click.option(
    "--out",
    type=PATH,
    help=(
        "Folder for stats.json and grid.png (the crops grid), created if needed, e.g."
        " inspect/."
    ),
)
@click.option(
    "--png", type=PATH, help="Write only the grid of union crops, to this PNG file."
)
@click.option(
    "--samples", default=16, show_default=True, help="Union crops drawn in the grid."
)
@click.option(
    "--images", type=PATH, help="Image folder, if it moved since the cache was written."
)
@user_errors
def cache_inspect(cache, out, png, samples, images) -> None:
    """Counts, teacher entropy, per-verb mass, and a PNG grid of crops with their top-3
    verbs.
    """
    from eoid.pipeline.run_cache_inspect import run_inspect
    from eoid.teacher_cache.stats import format_stats

    click.echo(format_stats(run_inspect(cache, png, images, samples, out=out)))


@cache_group.command("verify")
@click.argument("cache", type=PATH)
@click.option(
    "--annotations", type=PATH, help="The training annotations the cache should fit."
)
@click.option(
    "--images",
    type=PATH,
    help=(
        "Their image folder (default: the folder the cache was built from, in its"
        " manifest)."
    ),
)
@click.option("--dataset", help="Vocabulary name or file (default: the cache's).")
@user_errors
def cache_verify(cache, annotations, images, dataset) -> None:
    """Check integrity and fingerprint of a cache against a dataset."""
    import json

    from eoid.pipeline.run_cache_verify import run_verify

    click.echo(json.dumps(run_verify(cache, annotations, images, dataset), indent=1))


@cache_group.command("relabel")
@click.argument("cache", type=PATH)
@click.option(
    "--template",
    "--prompts",
    "template",
    help="New prompt template, e.g. 'a photo of a person {verb_ing} a {object}'.",
)
@click.option(
    "--templates",
    type=PATH,
    help=(
        "File of several templates (a JSON list or one per line): a prompt ensemble,"
        " each HOI's text embeddings averaged, e.g. configs/prompts/hoi_templates.txt."
    ),
)
@click.option(
    "--descriptions",
    type=PATH,
    help=(
        'JSON file of descriptions per HOI, keyed "VERB OBJECT" '
        '(e.g. {"ride bicycle": ["..."]}); alone or with --templates.'
    ),
)
@click.option(
    "--gamma",
    help=(
        "New similarity scale: a number, e.g. 100, or 'model' (the weights' own "
        "logit_scale.exp()). Default: keep the cache's."
    ),
)
@click.option(
    "--dataset", help="New vocabulary (verb set), name or file (default: keep)."
)
@click.option("--out", type=PATH, required=True, help="Folder of the relabelled cache.")
@click.option(
    "--clip-weights",
    help="Weights of the same teacher, for its text tower (default: as cached).",
)
@user_errors
def cache_relabel(
    cache, template, templates, descriptions, gamma, dataset, out, clip_weights
) -> None:
    """Recompute verb distributions for new prompts, gamma or verbs from the stored
    image embeddings.
    """
    from eoid.pipeline.run_cache_relabel import run_relabel

    new = run_relabel(
        cache,
        out,
        template,
        gamma,
        dataset,
        clip_weights,
        templates=templates,
        descriptions=descriptions,
    )
    click.echo(f"relabelled cache: {new}")


@cache_group.command("merge")
@click.argument("caches", type=PATH, nargs=-1, required=True)
@click.option(
    "--out",
    type=PATH,
    required=True,
    help="Folder of the merged cache, e.g. teacher_cache/ens.",
)
@click.option(
    "--weights", help="One weight per cache, e.g. 2,1 (normalised; default: equal)."
)
@click.option(
    "--rule",
    type=click.Choice(["mean", "geometric"]),
    default="mean",
    show_default=True,
    help=(
        "mean: sum of w_i p_i; geometric: prod p_i^w_i over the pair's valid verbs,"
        " renormalised."
    ),
)
@user_errors
def cache_merge(caches, out, weights, rule) -> None:
    """Merge caches of the same pairs (other teachers or prompts) into one
    teacher-ensemble cache.
    """
    from eoid.pipeline.run_cache_merge import run_merge

    click.echo(f"merged cache: {run_merge(list(caches), out, weights, rule)}")


@cache_group.command("export")
@click.argument("cache", type=PATH)
@click.option(
    "--out", type=PATH, required=True, help="HDF5 file to write, e.g. teacher_hico.h5."
)
@user_errors
def cache_export(cache, out) -> None:
    """Write a finished cache as one HDF5 file that h5py reads (layout:
    docs/teacher-cache.md).
    """
    from eoid.teacher_cache.export import export_hdf5

    click.echo(f"exported: {export_hdf5(cache, out)}")
