"""The `eoid` command line: click only — parse flags, build a config, call one runner,
map errors.
"""

from __future__ import annotations

from pathlib import Path

import click

from eoid.cli_cache import cache_group, cache_teacher
from eoid.cli_options import (
    PATH,
    EoidGroup,
    as_text,
    config_option,
    load_under_checkpoint,
    saved_on_stop,
    set_option,
    user_errors,
    verb_options,
    world_from_env,
)
from eoid.config import (
    EvalConfig,
    PredictConfig,
    TeacherConfig,
    TrainConfig,
    load_config,
)
from eoid.terminal import configure_logging


@click.group(cls=EoidGroup)
@click.version_option(package_name="eoid")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help=(
        "Also show the libraries' INFO log lines (open_clip, matplotlib, ...) and"
        " eoid's DEBUG."
    ),
)
def main(verbose: bool) -> None:
    """eoid: zero-shot HOI detection by distilling a cached CLIP teacher into a CDN
    student.
    """
    configure_logging(verbose)


# ----------------------------------------------------------------------------- phase 1

main.add_command(cache_teacher)
main.add_command(cache_group)


# ----------------------------------------------------------------------------- phase 2


@main.command("train")
@config_option
@click.option(
    "--cache", type=PATH, help="Teacher cache written by `eoid cache-teacher`."
)
@click.option("--out", type=PATH, help="Run folder, e.g. runs/ua_cdn_s.")
@click.option(
    "--annotations",
    type=PATH,
    help="Training annotations (overrides data.train_annotations).",
)
@click.option(
    "--images", type=PATH, help="Training image folder (overrides data.train_images)."
)
@click.option(
    "--setting", help="Zero-shot setting, e.g. ua, uc0, rf-uc (overrides data.setting)."
)
@click.option(
    "--online-teacher",
    is_flag=True,
    default=None,
    help="Run CLIP inside the loss, as the original code.",
)
@click.option(
    "--skip-bad",
    is_flag=True,
    default=None,
    help="Skip bad records (listed in RUN/bad_records.json).",
)
@click.option(
    "--resume",
    is_flag=True,
    default=None,
    help=(
        "Continue the run in --out from its last checkpoint (an --out with none yet "
        "starts the run, with a warning; a finished run is left as it is)."
    ),
)
@click.option(
    "--allow-changes",
    is_flag=True,
    default=None,
    help=(
        "With --resume: apply changed hyper-parameters from here on (recorded in "
        "RUN/config_changes.jsonl); without it a changed value is refused."
    ),
)
@click.option(
    "--break-lock",
    is_flag=True,
    default=None,
    help="Remove a stale lock left by a dead process.",
)
@set_option
@user_errors
@saved_on_stop(
    at_once="Run the same command with --resume to continue from the last checkpoint."
)
def train(
    config_path,
    cache,
    out,
    annotations,
    images,
    setting,
    online_teacher,
    skip_bad,
    resume,
    allow_changes,
    break_lock,
    overrides,
) -> None:
    """Train the student against a teacher cache."""
    cfg = load_config(
        TrainConfig,
        config_path,
        overrides,
        cache=as_text(cache),
        out=as_text(out),
        data__train_annotations=as_text(annotations),
        data__train_images=as_text(images),
        data__setting=setting,
        online_teacher=online_teacher,
        data__skip_bad=skip_bad,
        resume=resume,
        allow_changes=allow_changes,
        break_lock=break_lock,
    )
    from eoid.pipeline.evaluation.training_results import run_summary
    from eoid.pipeline.run_train import run_train

    world = world_from_env()
    out = run_train(cfg, world)
    if world.is_main:
        click.echo(run_summary(out))


@main.command("evaluate")
@config_option
@click.option(
    "--checkpoint", type=PATH, help="Student checkpoint (checkpoint.pt of a run)."
)
@click.option(
    "--predictions", type=PATH, help="Saved predictions JSON, scored without a model."
)
@click.option("--annotations", type=PATH, help="Test annotations, e.g. test_hico.json.")
@click.option("--images", type=PATH, help="Test image folder (with --checkpoint).")
@click.option(
    "--vocabulary",
    "dataset",
    help="Vocabulary with --predictions (default: the checkpoint's, else hico-det).",
)
@click.option(
    "--setting", help="Zero-shot setting whose Seen/Unseen split is reported, e.g. ua."
)
@click.option(
    "--mode",
    type=click.Choice(["default", "known_object"]),
    help="HICO-DET evaluation mode.",
)
@click.option("--out", type=PATH, help="Folder for results.json.")
@verb_options
@set_option
@user_errors
def evaluate(
    config_path,
    checkpoint,
    predictions,
    annotations,
    images,
    dataset,
    setting,
    mode,
    out,
    verb_classifier,
    clip,
    clip_weights,
    blend_weight,
    prior,
    overrides,
) -> None:
    """Score a student (or saved predictions) with the official HICO-DET protocol."""
    cfg = load_under_checkpoint(
        EvalConfig,
        config_path,
        overrides,
        checkpoint=as_text(checkpoint),
        predictions=as_text(predictions),
        data__test_annotations=as_text(annotations),
        data__test_images=as_text(images),
        data__dataset=dataset,
        data__setting=setting,
        mode=mode,
        out=as_text(out),
        verbs__classifier=verb_classifier,
        verbs__blend_weight=blend_weight,
        verbs__prior=prior,
    )
    if cfg.verbs.classifier != "student":
        from eoid.pipeline.run_evaluate_clip import run_clip_classifier

        teacher = load_config(TeacherConfig, None, (), model=clip, weights=clip_weights)
        click.echo(run_clip_classifier(cfg, teacher, world_from_env()))
        return
    from eoid.pipeline.run_evaluate import run_evaluate

    click.echo(run_evaluate(cfg, world_from_env()))


@main.command("predict")
@click.argument("images", nargs=-1, required=True, type=PATH)
@config_option
@click.option("--checkpoint", type=PATH, help="Student checkpoint.")
@click.option(
    "--onnx", type=PATH, help="Instead of --checkpoint: model.onnx from `eoid export`."
)
@click.option("--out", type=PATH, help="Folder for predictions.json and drawn PNGs.")
@click.option(
    "--top-k", type=int, help="Triplets listed and drawn per image (default 10)."
)
@verb_options
@set_option
@user_errors
def predict(
    images,
    config_path,
    checkpoint,
    onnx,
    out,
    top_k,
    verb_classifier,
    clip,
    clip_weights,
    blend_weight,
    prior,
    overrides,
) -> None:
    """Detect HOI triplets in your own images or folders of images (CPU is fine)."""
    cfg = load_under_checkpoint(
        PredictConfig,
        config_path,
        overrides,
        checkpoint=as_text(checkpoint),
        onnx=as_text(onnx),
        out=as_text(out),
        top_k=top_k,
        verbs__classifier=verb_classifier,
        verbs__blend_weight=blend_weight,
        verbs__prior=prior,
    )
    teacher = None
    if cfg.verbs.classifier != "student":
        teacher = load_config(TeacherConfig, None, (), model=clip, weights=clip_weights)
    from eoid.pipeline.run_predict import run_predict

    click.echo(run_predict(cfg, list(images), world_from_env(), teacher))


@main.command("import-checkpoint")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--from",
    "source",
    type=click.Choice(["eoid-official", "cdn-official"]),
    required=True,
    help=(
        "Which code wrote FILE: mrwu-mac/EoID (eoid-official) or YueLiao/CDN"
        " (cdn-official)."
    ),
)
@click.option(
    "--out", type=PATH, help="eoid checkpoint to write, e.g. ckpt/eoid_ua.pt."
)
@click.option(
    "--preset",
    help="cdn-s, cdn-b or cdn-l; refused if the weights disagree (default: theirs).",
)
@click.option(
    "--dataset",
    help="hico-det or v-coco; refused if the verb head disagrees (default: from it).",
)
@click.option(
    "--check", is_flag=True, help="Dry run: print where every key lands, write nothing."
)
@user_errors
def import_checkpoint(file, source, out, preset, dataset, check) -> None:
    """Turn the authors' released EoID or CDN checkpoint into an eoid checkpoint."""
    from eoid.pipeline.run_import import run_import

    click.echo(run_import(file, source, out, preset, dataset, check, click.echo))


@main.command("export")
@click.option(
    "--checkpoint",
    type=PATH,
    required=True,
    help="Student checkpoint, a run's or imported.",
)
@click.option(
    "--out", type=PATH, required=True, help="ONNX file to write, e.g. model.onnx."
)
@click.option(
    "--opset",
    type=int,
    default=17,
    show_default=True,
    help="ONNX opset version, 14 to 20.",
)
@user_errors
def export(checkpoint, out, opset) -> None:
    """Write the student's forward as ONNX (dynamic batch, height, width); pip install
    'eoid[export]'.
    """
    from eoid.pipeline.run_export import run_export

    click.echo(run_export(checkpoint, out, opset))


@main.command("report")
@click.argument("run", type=PATH)
@user_errors
def report(run) -> None:
    """Plot the loss and mAP curves of a run to PNG."""
    from eoid.pipeline.run_report import run_report

    click.echo(run_report(run))


@main.command("sweep")
@click.argument("study", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=PATH,
    required=True,
    help="Study folder (runs/, table.md/.csv/.png), e.g. runs/studies/table3.",
)
@click.option(
    "--part",
    default="",
    help="i/n: run only every n-th run from i (job arrays, one GPU each), e.g. 0/4.",
)
@click.option(
    "--caches-only",
    is_flag=True,
    help="Build the study's caches, train nothing (before launching parts).",
)
@click.option(
    "--collect-only",
    is_flag=True,
    help="Write the tables from the finished runs, train nothing.",
)
@set_option
@user_errors
@saved_on_stop(
    "Run the same command again to resume: finished runs are kept and the stopped one"
    " continues."
)
def sweep(study, out, part, caches_only, collect_only, overrides) -> None:
    """Run a study (configs/studies/*.toml): every variant on shared teacher caches,
    then its table.
    """
    from eoid.pipeline.run_sweep import run_sweep

    click.echo(
        run_sweep(
            study, out, world_from_env(), part, overrides, caches_only, collect_only
        )
    )


@main.command("pseudo-label")
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


@main.command("mix")
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


@main.command("evaluate-vcoco")
@click.option(
    "--checkpoint",
    type=PATH,
    required=True,
    help=(
        "Student of V-COCO's own verbs, of a mix, or of the mapping's base"
        " (checkpoint.pt)."
    ),
)
@click.option(
    "--mapping",
    default="vcoco-to-hico-det",
    show_default=True,
    help=(
        "Verb mapping: relates the student's verbs to V-COCO's and splits Seen /"
        " Unseen."
    ),
)
@click.option(
    "--annotations",
    type=PATH,
    required=True,
    help="V-COCO test in HOIA JSON, e.g. test_vcoco.json.",
)
@click.option(
    "--images", type=PATH, required=True, help="Its image folder, e.g. coco/val2014."
)
@click.option("--out", type=PATH, required=True, help="Folder for vcoco_results.json.")
@click.option(
    "--batch-size",
    type=int,
    default=2,
    show_default=True,
    help="Images per forward pass.",
)
@user_errors
def evaluate_vcoco(checkpoint, mapping, annotations, images, out, batch_size) -> None:
    """V-COCO role AP (scenarios 1, 2), Full / Seen / Unseen by the mapping (Table 6)."""
    from eoid.pipeline.run_evaluate_vcoco import run_evaluate_vcoco

    click.echo(
        run_evaluate_vcoco(
            checkpoint,
            annotations,
            images,
            mapping,
            out,
            world_from_env(),
            batch_size=batch_size,
        )
    )


# ----------------------------------------------------------------------------- data and
# the world


@main.group("data")
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


@main.command("synth")
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
    from eoid.pipeline.synth.world import FREE, QUICKSTART, generate_world

    paths = generate_world(
        out, num_images, seed, layout=QUICKSTART if layout == "quickstart" else FREE
    )
    click.echo(paths.describe())


@main.command("synth-teacher")
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


@main.command("quickstart")
@click.option(
    "--out",
    type=PATH,
    default=Path("eoid-quickstart"),
    show_default=True,
    help="Output folder.",
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed of the world and both runs."
)
@set_option
@user_errors
@saved_on_stop(
    "Run the same command again to resume: finished runs are kept and the stopped one"
    " continues."
)
def quickstart(out, seed, overrides) -> None:
    """Generate the world, cache the shipped teacher, train EoID and a no-teacher
    baseline, compare.

    --set changes the recipe (eoid/data/quickstart.toml) of both runs alike.
    """
    from eoid.pipeline.run_quickstart import run_quickstart

    click.echo(run_quickstart(out, seed=seed, overrides=tuple(overrides)))


if __name__ == "__main__":
    main()
