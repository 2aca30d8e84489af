"""The `eoid` command line: click only — parse flags, build a config, call one runner, map errors."""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import click

from eoid.config import CacheConfig, EvalConfig, PredictConfig, TeacherConfig, TrainConfig, load_config
from eoid.errors import EoidError

PATH = click.Path(path_type=Path)


def user_errors(command):
    """Show an EoidError as one line and a non-zero exit; other errors keep their traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EoidError as err:
            raise click.ClickException(str(err)) from None
    return wrapper


def _logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _world():
    from eoid.pipeline.training.distributed import init_world
    return init_world()


config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                             help="TOML recipe, e.g. configs/hico_ua.toml.")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override one config field, e.g. --set loss.distill=500 (repeatable).")


@click.group()
@click.version_option(package_name="eoid")
def main() -> None:
    """eoid: zero-shot HOI detection by distilling a cached CLIP teacher into a CDN student."""
    _logging()


# ----------------------------------------------------------------------------- phase 1

@main.command("cache-teacher")
@config_option
@click.option("--dataset", help="Vocabulary: hico-det, v-coco or a vocabulary JSON. Default hico-det.")
@click.option("--annotations", type=PATH, help="Training annotations, e.g. trainval_hico.json.")
@click.option("--images", type=PATH, help="Folder of the training images, e.g. images/train2015.")
@click.option("--clip", help="open_clip model name, e.g. RN50x16 (RN50x16-quickgelu for OpenAI weights).")
@click.option("--clip-weights", help="open_clip pretrained tag or local weights file: openai|PATH.")
@click.option("--out", type=PATH, help="Cache folder to write, e.g. teacher_cache/.")
@click.option("--part", help="i/n: write only part i of n (cluster job arrays), e.g. 0/8.")
@click.option("--skip-bad", is_flag=True, default=None, help="Skip bad records (listed in bad_records.json).")
@click.option("--break-lock", is_flag=True, default=None, help="Remove a stale lock left by a dead process.")
@set_option
@user_errors
def cache_teacher(config_path, dataset, annotations, images, clip, clip_weights, out, part, skip_bad,
                  break_lock, overrides) -> None:
    """Run the CLIP teacher once over every candidate pair and write the teacher cache."""
    cfg = load_config(CacheConfig, config_path, overrides, data__dataset=dataset,
                      data__train_annotations=_s(annotations), data__train_images=_s(images),
                      teacher__model=clip, teacher__weights=clip_weights, out=_s(out), part=part,
                      data__skip_bad=skip_bad, break_lock=break_lock)
    from eoid.pipeline.run_cache import run_cache
    click.echo(f"teacher cache: {run_cache(cfg, _world())}")


@main.group("cache")
def cache_group() -> None:
    """Inspect, verify and relabel a teacher cache."""


@cache_group.command("inspect")
@click.argument("cache", type=PATH)
@click.option("--png", type=PATH, help="Write a grid of sample union crops with their top-3 verbs here.")
@click.option("--samples", default=16, show_default=True, help="Union crops drawn in the grid.")
@click.option("--images", type=PATH, help="Image folder, if it moved since the cache was written.")
@user_errors
def cache_inspect(cache, png, samples, images) -> None:
    """Counts, teacher entropy, per-verb mass, and a PNG grid of crops with their top-3 verbs."""
    from eoid.pipeline.run_cache_inspect import run_inspect
    from eoid.teacher_cache.stats import format_stats
    click.echo(format_stats(run_inspect(cache, png, images, samples)))


@cache_group.command("verify")
@click.argument("cache", type=PATH)
@click.option("--annotations", type=PATH, help="The training annotations the cache should fit.")
@click.option("--images", type=PATH, help="Their image folder.")
@click.option("--dataset", help="Vocabulary name or file (default: the cache's).")
@user_errors
def cache_verify(cache, annotations, images, dataset) -> None:
    """Check integrity and fingerprint of a cache against a dataset."""
    import json

    from eoid.pipeline.run_cache_verify import run_verify
    click.echo(json.dumps(run_verify(cache, annotations, images, dataset), indent=1))


@cache_group.command("relabel")
@click.argument("cache", type=PATH)
@click.option("--template", "--prompts", "template",
              help="New prompt template, e.g. 'a photo of a person {verb_ing} a {object}'.")
@click.option("--gamma", help="New similarity scale: a number, e.g. 100, or 'model' (the weights' own "
              "logit_scale.exp()). Default: keep the cache's.")
@click.option("--dataset", help="New vocabulary (verb set), name or file (default: keep).")
@click.option("--out", type=PATH, required=True, help="Folder of the relabelled cache.")
@click.option("--clip-weights", help="Weights of the same teacher, for its text tower (default: as cached).")
@user_errors
def cache_relabel(cache, template, gamma, dataset, out, clip_weights) -> None:
    """Recompute verb distributions for new prompts, gamma or verbs from the stored image embeddings."""
    from eoid.pipeline.run_cache_relabel import run_relabel
    click.echo(f"relabelled cache: {run_relabel(cache, out, template, gamma, dataset, clip_weights)}")


# ----------------------------------------------------------------------------- phase 2

@main.command("train")
@config_option
@click.option("--cache", type=PATH, help="Teacher cache written by `eoid cache-teacher`.")
@click.option("--out", type=PATH, help="Run folder, e.g. runs/ua_cdn_s.")
@click.option("--annotations", type=PATH, help="Training annotations (overrides data.train_annotations).")
@click.option("--images", type=PATH, help="Training image folder (overrides data.train_images).")
@click.option("--setting", help="Zero-shot setting, e.g. ua, uc0, rf-uc (overrides data.setting).")
@click.option("--online-teacher", is_flag=True, default=None,
              help="Run CLIP inside the loss, as the original code.")
@click.option("--skip-bad", is_flag=True, default=None,
              help="Skip bad records (listed in RUN/bad_records.json).")
@click.option("--resume", is_flag=True, default=None,
              help="Continue the run in --out from its last checkpoint.")
@click.option("--break-lock", is_flag=True, default=None, help="Remove a stale lock left by a dead process.")
@set_option
@user_errors
def train(config_path, cache, out, annotations, images, setting, online_teacher, skip_bad, resume,
          break_lock, overrides) -> None:
    """Train the student against a teacher cache."""
    cfg = load_config(TrainConfig, config_path, overrides, cache=_s(cache), out=_s(out),
                      data__train_annotations=_s(annotations), data__train_images=_s(images),
                      data__setting=setting, online_teacher=online_teacher, data__skip_bad=skip_bad,
                      resume=resume, break_lock=break_lock)
    from eoid.pipeline.run_train import run_train
    click.echo(f"run: {run_train(cfg, _world())}")


@main.command("evaluate")
@config_option
@click.option("--checkpoint", type=PATH, help="Student checkpoint (checkpoint.pt of a run).")
@click.option("--predictions", type=PATH, help="Saved predictions JSON, scored without a model.")
@click.option("--annotations", type=PATH, help="Test annotations, e.g. test_hico.json.")
@click.option("--images", type=PATH, help="Test image folder (with --checkpoint).")
@click.option("--vocabulary", "dataset",
              help="Vocabulary with --predictions (default: the checkpoint's, else hico-det).")
@click.option("--setting", help="Zero-shot setting whose Seen/Unseen split is reported, e.g. ua.")
@click.option("--mode", type=click.Choice(["default", "known_object"]), help="HICO-DET evaluation mode.")
@click.option("--out", type=PATH, help="Folder for results.json.")
@click.option("--verb-classifier", type=click.Choice(["student", "clip"]),
              default="student", show_default=True,
              help="clip: keep the student's boxes and objects, score verbs with CLIP "
                   "on each pair's union crop (Table 2).")
@click.option("--clip",
              help="With --verb-classifier clip: open_clip model, e.g. RN50x16-quickgelu (default RN50x16).")
@click.option("--clip-weights",
              help="With --verb-classifier clip: pretrained tag or local file, openai|PATH (default openai).")
@click.option("--prior/--no-prior", default=True, show_default=True,
              help="With --verb-classifier clip: softmax over the predicted object's HOIs only "
                   "(the teacher's mask).")
@set_option
@user_errors
def evaluate(config_path, checkpoint, predictions, annotations, images, dataset, setting, mode, out,
             verb_classifier, clip, clip_weights, prior, overrides) -> None:
    """Score a student (or saved predictions) with the official HICO-DET protocol."""
    cfg = _load_under_checkpoint(EvalConfig, config_path, overrides, checkpoint=_s(checkpoint),
                                 predictions=_s(predictions), data__test_annotations=_s(annotations),
                                 data__test_images=_s(images), data__dataset=dataset,
                                 data__setting=setting, mode=mode, out=_s(out))
    if verb_classifier == "clip":
        from eoid.pipeline.run_evaluate_clip import run_clip_classifier
        teacher = load_config(TeacherConfig, None, (), model=clip, weights=clip_weights)
        click.echo(run_clip_classifier(cfg, teacher, _world(), prior))
        return
    from eoid.pipeline.run_evaluate import run_evaluate
    click.echo(run_evaluate(cfg, _world()))


@main.command("predict")
@click.argument("images", nargs=-1, required=True, type=PATH)
@config_option
@click.option("--checkpoint", type=PATH, help="Student checkpoint.")
@click.option("--out", type=PATH, help="Folder for predictions.json and drawn PNGs.")
@click.option("--top-k", type=int, help="Triplets listed and drawn per image (default 10).")
@set_option
@user_errors
def predict(images, config_path, checkpoint, out, top_k, overrides) -> None:
    """Detect HOI triplets in your own images (student only, CPU is fine)."""
    cfg = _load_under_checkpoint(PredictConfig, config_path, overrides, checkpoint=_s(checkpoint),
                                 out=_s(out), top_k=top_k)
    from eoid.pipeline.run_predict import run_predict
    click.echo(run_predict(cfg, list(images), _world()))


@main.command("report")
@click.argument("run", type=PATH)
@user_errors
def report(run) -> None:
    """Plot the loss and mAP curves of a run to PNG."""
    from eoid.pipeline.run_report import run_report
    click.echo(run_report(run))


@main.command("sweep")
@click.argument("study", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=PATH, required=True,
              help="Study folder (runs/, table.md/.csv/.png), e.g. runs/studies/table3.")
@click.option("--part", default="",
              help="i/n: run only every n-th run from i (job arrays, one GPU each), e.g. 0/4.")
@click.option("--caches-only", is_flag=True,
              help="Build the study's caches, train nothing (before launching parts).")
@click.option("--collect-only", is_flag=True, help="Write the tables from the finished runs, train nothing.")
@set_option
@user_errors
def sweep(study, out, part, caches_only, collect_only, overrides) -> None:
    """Run a study (configs/studies/*.toml): every variant on shared teacher caches, then its table."""
    from eoid.pipeline.run_sweep import run_sweep
    click.echo(run_sweep(study, out, _world(), part, overrides, caches_only, collect_only))


@main.command("pseudo-label")
@click.option("--checkpoint", type=PATH, required=True, help="Student trained on HICO-DET (checkpoint.pt).")
@click.option("--coco", type=PATH, required=True, help="COCO instances JSON (boxes only).")
@click.option("--images", type=PATH, required=True, help="Folder of those images, e.g. coco/train2014.")
@click.option("--out", type=PATH, required=True, help="Pseudo-labelled HICO-DET JSON to write.")
@click.option("--threshold", type=float, default=0.1, show_default=True,
              help="Lowest triplet score kept as a label.")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Images per forward pass.")
@user_errors
def pseudo_label(checkpoint, coco, images, out, threshold, batch_size) -> None:
    """Pseudo seen-action labels on boxes-only COCO images from a HICO-DET student (Table 6)."""
    from eoid.pipeline.run_pseudo_label import run_pseudo_label
    click.echo(run_pseudo_label(checkpoint, coco, images, out, _world(), threshold=threshold,
                                batch_size=batch_size))


@main.command("mix")
@click.option("--source", "sources", type=(PATH, PATH, str), multiple=True, required=True,
              metavar="ANNOTATIONS IMAGES VOCABULARY",
              help="One training set and its vocabulary; repeatable.")
@click.option("--mapping", default="vcoco-to-hico-det", show_default=True,
              help="Verb mapping: built-in name or JSON.")
@click.option("--out", type=PATH, required=True, help="Folder of the mixed set, e.g. data/hico_vcoco.")
@click.option("--skip-bad", is_flag=True, help="Skip bad records instead of stopping.")
@user_errors
def mix(sources, mapping, out, skip_bad) -> None:
    """Write several annotation files as one training set in a merged vocabulary."""
    from eoid.pipeline.run_mix import MixSource, run_mix
    click.echo(run_mix([MixSource(*s) for s in sources], mapping, out, skip_bad=skip_bad))


@main.command("evaluate-vcoco")
@click.option("--checkpoint", type=PATH, required=True, help="Student trained on a mix (checkpoint.pt).")
@click.option("--mapping", default="vcoco-to-hico-det", show_default=True,
              help="The verb mapping of the mix.")
@click.option("--annotations", type=PATH, required=True,
              help="V-COCO test in HOIA JSON, e.g. test_vcoco.json.")
@click.option("--images", type=PATH, required=True, help="Its image folder, e.g. coco/val2014.")
@click.option("--out", type=PATH, required=True, help="Folder for vcoco_results.json.")
@click.option("--batch-size", type=int, default=2, show_default=True, help="Images per forward pass.")
@user_errors
def evaluate_vcoco(checkpoint, mapping, annotations, images, out, batch_size) -> None:
    """V-COCO role AP (scenarios 1, 2), Full / Seen / Unseen by the mapping (Table 6)."""
    from eoid.pipeline.run_evaluate_vcoco import run_evaluate_vcoco
    click.echo(run_evaluate_vcoco(checkpoint, annotations, images, mapping, out, _world(),
                                  batch_size=batch_size))


# ----------------------------------------------------------------------------- data and the world

@main.group("data")
def data_group() -> None:
    """Check datasets."""


@data_group.command("check")
@click.argument("annotations", type=PATH)
@click.option("--images", type=PATH, required=True, help="Image folder of that annotation file.")
@click.option("--dataset", default="hico-det", show_default=True, help="Vocabulary name or file.")
@user_errors
def data_check(annotations, images, dataset) -> None:
    """Report every problem of a dataset at once, with counts; exit 1 if there is any."""
    from eoid.pipeline.data.readers import check_dataset, format_report
    from eoid.pipeline.data.vocab import load_vocabulary
    report = check_dataset(annotations, images, load_vocabulary(dataset))
    click.echo(format_report(report))
    if not report.ok:
        raise SystemExit(1)


@main.command("synth")
@click.option("--out", type=PATH, required=True, help="Folder of the generated world.")
@click.option("--images", "num_images", default=400, show_default=True, help="Images to generate.")
@click.option("--seed", default=0, show_default=True, help="Seed (same seed, same bytes).")
@click.option("--layout", type=click.Choice(["free", "quickstart"]), default="free", show_default=True,
              help="free: people anywhere (the teacher's world); quickstart: people in columns.")
@user_errors
def synth(out, num_images, seed, layout) -> None:
    """Generate the built-in synthetic HOI world (HICO-DET format + its vocabulary)."""
    from eoid.pipeline.synth.world import FREE, QUICKSTART, generate_world
    click.echo(generate_world(out, num_images, seed, layout=QUICKSTART if layout == "quickstart" else FREE))


@main.command("synth-teacher")
@click.option("--out", type=PATH, required=True,
              help="Weights file to write, e.g. eoid/data/eoid-synth-clip.safetensors.")
@click.option("--seed", default=0, show_default=True, help="Seed of the web data, init and batch order.")
@click.option("--steps", default=500, show_default=True, help="Training steps (batch 128).")
@user_errors
def synth_teacher(out, seed, steps) -> None:
    """Retrain the synthetic world's small CLIP teacher reproducibly (the shipped one: seed 0, 500 steps)."""
    import json

    from eoid.pipeline.synth.teacher import train_synth_teacher
    click.echo(json.dumps(train_synth_teacher(out, seed=seed, steps=steps), indent=1))


@main.command("quickstart")
@click.option("--out", type=PATH, default=Path("eoid-quickstart"), show_default=True, help="Output folder.")
@click.option("--seed", default=0, show_default=True, help="Seed of the world and both runs.")
@user_errors
def quickstart(out, seed) -> None:
    """Generate the world, cache the shipped teacher, train EoID and a no-teacher baseline, compare."""
    from eoid.pipeline.run_quickstart import run_quickstart
    click.echo(run_quickstart(out, seed=seed))


def _load_under_checkpoint(cls, config_path, overrides, **flags):
    """Load an evaluate/predict config whose [augment] and [post] default to the checkpoint's
    training recipe (`evaluation_recipe`) instead of the HICO-DET defaults."""
    cfg = load_config(cls, config_path, overrides, **flags)
    if not cfg.checkpoint:
        return cfg
    from eoid.pipeline.training.checkpoint import evaluation_recipe
    return load_config(cls, config_path, overrides, under=evaluation_recipe(Path(cfg.checkpoint)), **flags)


def _s(path: Path | None) -> str | None:
    return None if path is None else str(path)


if __name__ == "__main__":
    main()
