"""The whole product through the CLI on a generated world: cache, train, evaluate,
predict, report.
"""

import json

from click.testing import CliRunner

from eoid.cli import main


def _sets(world):
    out = []
    for s in world["sets"]:
        out += ["--set", s]
    return out


def test_cache_train_evaluate_predict_report_run_end_to_end(world, tmp_path):
    paths, runner = world["paths"], CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(
        main,
        [
            "train",
            "--cache",
            str(world["cache"]),
            "--out",
            str(run),
            "--annotations",
            str(paths.train_json),
            "--images",
            str(paths.image_dir),
            "--setting",
            "ua",
            *_sets(world),
            "--set",
            "loss.a_u_only=true",
            "--set",
            "optim.epochs=1",
            "--set",
            "optim.batch_size=4",
            "--set",
            "optim.max_iters=3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        f"run: {run}" in result.output and "selected: the last epoch" in result.output
    )
    rows = [
        json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    # every candidate pair is cached
    assert all(r["teacher_miss_rate"] == 0.0 for r in rows)
    assert (run / "config.toml").exists() and (run / "checkpoint.pt").exists()

    result = runner.invoke(
        main,
        [
            "evaluate",
            "--checkpoint",
            str(run / "checkpoint.pt"),
            "--annotations",
            str(paths.test_json),
            "--images",
            str(paths.image_dir),
            "--setting",
            "ua",
            "--out",
            str(tmp_path / "eval"),
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert set(results["mAP"]) == {"full", "rare", "non_rare", "seen", "unseen", "hm"}
    # the cost of inference beside the accuracy: each stage in ms per image, the setup
    # stated
    speed = results["speed"]
    assert (
        speed["device"] == "cpu"
        and speed["dtype"] == "float32"
        and speed["batch_size"] == 2
    )
    assert (
        speed["ms_per_image"]["student"] > 0
        and speed["ms_per_image"]["postprocess"] > 0
    )
    assert "speed (ms per image; cpu, float32, batch 2" in result.output
    assert "Full" in result.output or "full" in result.output
    # no --config: the student is tested at the resolution it was trained for, not at
    # 800 px
    used = (tmp_path / "eval" / "eval_config.toml").read_text()
    assert "test_size = 112" in used and "test_size = 800" not in used

    # the saved predictions score the same without the model
    result = runner.invoke(
        main,
        [
            "evaluate",
            "--predictions",
            str(tmp_path / "eval" / "predictions.json"),
            "--annotations",
            str(paths.test_json),
            "--vocabulary",
            str(paths.vocabulary),
            "--setting",
            "ua",
            "--out",
            str(tmp_path / "eval2"),
        ],
    )
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "eval2" / "results.json").read_text())
    assert again["mAP"] == results["mAP"]

    images = sorted(paths.image_dir.glob("test_*.png"))[:2]
    result = runner.invoke(
        main,
        [
            "predict",
            *map(str, images),
            "--checkpoint",
            str(run / "checkpoint.pt"),
            "--out",
            str(tmp_path / "pred"),
            "--top-k",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    listing = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(listing) == 2 and all(len(item["triplets"]) <= 3 for item in listing)
    assert len(list((tmp_path / "pred").glob("*.png"))) == 2
    # one predictions format: what predict writes, evaluate reads as it is (file names,
    # not paths)
    assert [item["file_name"] for item in listing] == [p.name for p in images]
    result = runner.invoke(
        main,
        [
            "evaluate",
            "--predictions",
            str(tmp_path / "pred" / "predictions.json"),
            "--annotations",
            str(paths.test_json),
            "--vocabulary",
            str(paths.vocabulary),
            "--setting",
            "ua",
            "--out",
            str(tmp_path / "eval_pred"),
        ],
    )
    assert result.exit_code == 0, result.output
    used = (tmp_path / "pred" / "predict_config.toml").read_text()
    assert "test_size = 112" in used

    # an explicit --set still beats the checkpoint's recipe
    result = runner.invoke(
        main,
        [
            "predict",
            str(images[0]),
            "--checkpoint",
            str(run / "checkpoint.pt"),
            "--out",
            str(tmp_path / "pred96"),
            "--set",
            "augment.test_size=96",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "test_size = 96" in (tmp_path / "pred96" / "predict_config.toml").read_text()

    # CLIP at inference, blended with the student's verbs, in predict and in evaluate
    clip = ["--clip", "eoid-synth-clip", "--clip-weights", "bundled"]
    result = runner.invoke(
        main,
        [
            "predict",
            *map(str, images),
            "--checkpoint",
            str(run / "checkpoint.pt"),
            "--out",
            str(tmp_path / "pred_blend"),
            "--verb-classifier",
            "blend",
            "--blend-weight",
            "0.3",
            *clip,
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        len(json.loads((tmp_path / "pred_blend" / "predictions.json").read_text())) == 2
    )
    assert (
        "blend_weight = 0.3"
        in (tmp_path / "pred_blend" / "predict_config.toml").read_text()
    )
    result = runner.invoke(
        main,
        [
            "evaluate",
            "--checkpoint",
            str(run / "checkpoint.pt"),
            "--annotations",
            str(paths.test_json),
            "--images",
            str(paths.image_dir),
            "--setting",
            "ua",
            "--out",
            str(tmp_path / "eval_blend"),
            "--verb-classifier",
            "blend",
            "--blend-weight",
            "0.3",
            *clip,
        ],
    )
    assert result.exit_code == 0, result.output
    blended = json.loads((tmp_path / "eval_blend" / "results.json").read_text())
    assert (
        blended["meta"]["verb_classifier"] == "blend"
        and blended["meta"]["blend_weight"] == 0.3
    )
    assert (
        blended["speed"]["ms_per_image"]["clip"] > 0
        and blended["speed"]["clip"] == "eoid-synth-clip"
    )
    assert "student^0.7 x CLIP^0.3" in result.output

    result = runner.invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "loss.png").stat().st_size > 0


def test_a_user_mistake_is_one_line_without_traceback(world, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--out",
            str(tmp_path / "r"),
            "--annotations",
            str(tmp_path / "missing.json"),
            "--images",
            str(tmp_path / "images"),
        ],
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "missing.json" in result.output


def test_train_refuses_a_cache_built_from_other_annotations(world, tmp_path):
    paths = world["paths"]
    other = tmp_path / "train_copy.json"
    records = json.loads(paths.train_json.read_text())[:-1]  # one image fewer
    other.write_text(json.dumps(records))
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--cache",
            str(world["cache"]),
            "--out",
            str(tmp_path / "r"),
            "--annotations",
            str(other),
            "--images",
            str(paths.image_dir),
            *_sets(world),
            "--set",
            "optim.max_iters=1",
        ],
    )
    assert result.exit_code == 1
    assert "annotation file" in result.output and "does not fit" in result.output


def test_train_refuses_to_overwrite_a_run_without_resume(world, tmp_path):
    paths = world["paths"]
    args = [
        "train",
        "--out",
        str(tmp_path / "r"),
        "--annotations",
        str(paths.train_json),
        "--images",
        str(paths.image_dir),
        *_sets(world),
        "--set",
        "loss.distill=0",
    ]
    one = ["--set", "optim.epochs=1", "--set", "optim.max_iters=1"]
    assert CliRunner().invoke(main, [*args, *one]).exit_code == 0
    # not finished at that length
    longer = ["--set", "optim.epochs=2", "--set", "optim.max_iters=2"]
    result = CliRunner().invoke(main, [*args, *longer])
    assert result.exit_code == 1 and "--resume" in result.output
    # the same command again: the run is finished, so it only prints where it stands
    done = CliRunner().invoke(main, [*args, *one])
    assert done.exit_code == 0 and f"run: {tmp_path / 'r'}" in done.output
