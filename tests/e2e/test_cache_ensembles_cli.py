"""Teacher ensembles through the CLI: relabel with a prompt ensemble, merge, and train
on the merge.
"""

import json

import numpy as np
from click.testing import CliRunner

from eoid.cli import main
from eoid.teacher_cache.lookup import CacheReader


def test_train_reads_a_merged_cache_of_a_prompt_ensemble_and_the_plain_cache(
    world, tmp_path
):
    paths, runner = world["paths"], CliRunner()
    templates = tmp_path / "templates.txt"
    templates.write_text(
        "a picture of person {verb_ing} {object}\n"
        "a photo of a person {verb_ing} a {object}\n"
    )
    result = runner.invoke(
        main,
        [
            "cache",
            "relabel",
            str(world["cache"]),
            "--templates",
            str(templates),
            "--out",
            str(tmp_path / "ens"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        main,
        [
            "cache",
            "merge",
            str(world["cache"]),
            str(tmp_path / "ens"),
            "--weights",
            "1,3",
            "--rule",
            "geometric",
            "--out",
            str(tmp_path / "merged"),
        ],
    )
    assert result.exit_code == 0, result.output
    merged = CacheReader(tmp_path / "merged")
    assert (
        merged.fingerprint["model"]
        == "merge(geometric; eoid-synth-clip, eoid-synth-clip)"
    )
    assert not np.allclose(
        merged.verb_probs, CacheReader(world["cache"]).verb_probs, atol=1e-4
    )

    run = tmp_path / "run"
    sets = [a for s in world["sets"] for a in ("--set", s)]
    result = runner.invoke(
        main,
        [
            "train",
            "--cache",
            str(tmp_path / "merged"),
            "--out",
            str(run),
            "--annotations",
            str(paths.train_json),
            "--images",
            str(paths.image_dir),
            "--setting",
            "ua",
            *sets,
            "--set",
            "loss.a_u_only=true",
            "--set",
            "optim.epochs=1",
            "--set",
            "optim.batch_size=4",
            "--set",
            "optim.max_iters=2",
            "--set",
            "data.test_annotations=",
            "--set",
            "data.val_images=0",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [
        json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["iteration"] for r in rows if "iteration" in r] == [1, 2]
    assert all(r["teacher_miss_rate"] == 0.0 for r in rows if "iteration" in r)
    assert all(r["loss_verb_distill"] > 0 for r in rows if "iteration" in r)


def test_relabel_of_a_merged_cache_is_one_line_with_the_fix(world, tmp_path):
    runner = CliRunner()
    assert (
        runner.invoke(
            main,
            [
                "cache",
                "merge",
                str(world["cache"]),
                str(world["cache"]),
                "--out",
                str(tmp_path / "m"),
            ],
        ).exit_code
        == 0
    )
    result = runner.invoke(
        main,
        [
            "cache",
            "relabel",
            str(tmp_path / "m"),
            "--gamma",
            "50",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "merged cache" in result.output and "Relabel each member" in result.output


def test_merge_relabel_and_train_refuse_to_write_into_the_cache_they_read(
    world, tmp_path
):
    cache, runner = str(world["cache"]), CliRunner()
    sets = [x for s in world["sets"] for x in ("--set", s)]
    files = sorted(p.name for p in world["cache"].rglob("*"))
    for args in (
        ["cache", "merge", cache, cache, "--out", cache],
        ["cache", "relabel", cache, "--gamma", "50", "--out", cache + "/relabelled"],
        ["train", "--cache", cache, "--out", cache, *sets],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "this command reads" in result.output and cache in result.output
    assert sorted(p.name for p in world["cache"].rglob("*")) == files
