"""`eoid evaluate`, `evaluate-vcoco`, `predict`, `export` and `import-checkpoint`: the
commands that score, run or convert a trained student checkpoint (click only). Each
parses its flags, builds a config where it takes one, calls one runner and prints what
it returns; `eoid.cli` registers them on the main group.
"""

from __future__ import annotations

from pathlib import Path

import click

from eoid.cli_options import (
    PATH,
    EoidCommand,
    as_text,
    config_option,
    load_under_checkpoint,
    set_option,
    user_errors,
    verb_options,
    world_from_env,
)
from eoid.config import EvalConfig, PredictConfig, TeacherConfig
from eoid.config_loading import load_config


@click.command("evaluate", cls=EoidCommand)
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


@click.command("predict", cls=EoidCommand)
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


@click.command("import-checkpoint", cls=EoidCommand)
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


@click.command("export", cls=EoidCommand)
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


@click.command("evaluate-vcoco", cls=EoidCommand)
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
