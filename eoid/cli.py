"""The `eoid` command line: click only — parse flags, build a config, call one runner,
map errors.
"""

from __future__ import annotations

from pathlib import Path

import click

from eoid.cli_cache import cache_group, cache_teacher
from eoid.cli_data import data_group, mix, pseudo_label, synth, synth_teacher
from eoid.cli_evaluate import (
    evaluate,
    evaluate_vcoco,
    export,
    import_checkpoint,
    predict,
)
from eoid.cli_options import (
    PATH,
    EoidGroup,
    as_text,
    config_option,
    saved_on_stop,
    set_option,
    user_errors,
    world_from_env,
)
from eoid.config import TrainConfig
from eoid.config_loading import load_config
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


main.add_command(evaluate)
main.add_command(predict)
main.add_command(import_checkpoint)
main.add_command(export)


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


main.add_command(pseudo_label)
main.add_command(mix)
main.add_command(evaluate_vcoco)


# ----------------------------------------------------------------------------- data and
# the world

main.add_command(data_group)
main.add_command(synth)
main.add_command(synth_teacher)


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
