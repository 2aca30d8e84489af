"""`eoid data check`, `synth`, `synth-teacher`, `mix` and `pseudo-label`: the commands
that check, generate, merge or pseudo-label training data and the synthetic world's
teacher (click only). Each parses its flags, calls one runner or pipeline function and
prints what it returns; `eoid.cli` registers them on the main group.
"""

from __future__ import annotations

import click

from eoid.cli_options import PATH, EoidCommand, EoidGroup, user_errors, world_from_env


@click.command("pseudo-label", cls=EoidCommand)
@click.option(
    "--checkpoint",
    type=PATH,
    required=True,
    help="Student trained on HICO-DET (checkpoint.pt).",
)
@click.option(
    "--coco", type=PATH, required=True, help="COCO instances JSON (boxes only)."
)
@click.option(
    "--images",
    type=PATH,
    required=True,
    help="Folder of those images, e.g. coco/train2014.",
)
@click.option(
    "--out", type=PATH, required=True, help="Pseudo-labelled HICO-DET JSON to write."
)
@click.option(
    "--threshold",
    type=float,
    default=0.1,
    show_default=True,
    help="Lowest triplet score kept as a label.",
)
@click.option(
    "--batch-size",
    type=int,
    default=4,
    show_default=True,
    help="Images per forward pass.",
)
@user_errors
def pseudo_label(checkpoint, coco, images, out, threshold, batch_size) -> None:
    """Pseudo seen-action labels on boxes-only COCO images from a HICO-DET student
    (Table 6).
    """
    from eoid.pipeline.run_pseudo_label import run_pseudo_label

    click.echo(
        run_pseudo_label(
            checkpoint,
            coco,
            images,
            out,
            world_from_env(),
            threshold=threshold,
            batch_size=batch_size,
        )
    )


@click.command("mix", cls=EoidCommand)
@click.option(
    "--source",
    "sources",
    type=(PATH, PATH, str),
    multiple=True,
    required=True,
    metavar="ANNOTATIONS IMAGES VOCABULARY",
    help="One training set and its vocabulary; repeatable.",
)
@click.option(
    "--mapping",
    default="vcoco-to-hico-det",
    show_default=True,
    help="Verb mapping: built-in name or JSON.",
)
@click.option(
    "--out",
    type=PATH,
    required=True,
    help="Folder of the mixed set, e.g. data/hico_vcoco.",
)
@click.option("--skip-bad", is_flag=True, help="Skip bad records instead of stopping.")
@user_errors
def mix(sources, mapping, out, skip_bad) -> None:
    """Write several annotation files as one training set in a merged vocabulary."""
    from eoid.pipeline.run_mix import MixSource, run_mix

    click.echo(
        run_mix([MixSource(*s) for s in sources], mapping, out, skip_bad=skip_bad)
    )


@click.group("data", cls=EoidGroup)
def data_group() -> None:
    """Check datasets."""


@data_group.command("check")
@click.argument("annotations", type=PATH)
@click.option(
    "--images", type=PATH, required=True, help="Image folder of that annotation file."
)
@click.option(
    "--dataset", default="hico-det", show_default=True, help="Vocabulary name or file."
)
@user_errors
def data_check(annotations, images, dataset) -> None:
    """Report every problem of a dataset at once, with counts; exit 1 if there is any.

    Every image is decoded in full: a truncated file has a valid header."""
    from eoid.pipeline.data.readers import check_dataset, format_report
    from eoid.pipeline.data.vocab import load_vocabulary

    report = check_dataset(
        annotations, images, load_vocabulary(dataset), decode_images=True
    )
    click.echo(format_report(report, vocabulary=dataset))
    if not report.ok:
        raise SystemExit(1)


@click.command("synth", cls=EoidCommand)
@click.option("--out", type=PATH, required=True, help="Folder of the generated world.")
@click.option(
    "--images", "num_images", default=400, show_default=True, help="Images to generate."
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed (same seed, same bytes)."
)
@click.option(
    "--layout",
    type=click.Choice(["free", "quickstart"]),
    default="free",
    show_default=True,
    help="free: people anywhere (the teacher's world); quickstart: people in columns.",
)
@user_errors
def synth(out, num_images, seed, layout) -> None:
    """Generate the built-in synthetic HOI world (HICO-DET format + its vocabulary)."""
    from eoid.pipeline.synth.layouts import FREE, QUICKSTART
    from eoid.pipeline.synth.world import generate_world

    paths = generate_world(
        out, num_images, seed, layout=QUICKSTART if layout == "quickstart" else FREE
    )
    click.echo(paths.describe())


@click.command("synth-teacher", cls=EoidCommand)
@click.option(
    "--out",
    type=PATH,
    required=True,
    help="Weights file to write, e.g. eoid/data/eoid-synth-clip.safetensors.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    help="Seed of the web data, init and batch order.",
)
@click.option(
    "--steps", default=500, show_default=True, help="Training steps (batch 128)."
)
@click.option(
    "--model",
    "model_name",
    type=click.Choice(["eoid-synth-clip", "eoid-synth-clip-rn"]),
    default="eoid-synth-clip",
    show_default=True,
    help="Architecture: the shipped ViT, or a small ModifiedResNet (a second teacher).",
)
@user_errors
def synth_teacher(out, seed, steps, model_name) -> None:
    """Retrain the synthetic world's small CLIP teacher reproducibly (the shipped one:
    seed 0, 500 steps).
    """
    import json

    from eoid.pipeline.synth.teacher import train_synth_teacher

    click.echo(
        json.dumps(
            train_synth_teacher(out, seed=seed, steps=steps, model_name=model_name),
            indent=1,
        )
    )
