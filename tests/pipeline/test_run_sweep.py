"""`eoid sweep`: study files, run expansion, job-array parts, resumability, shared
caches, tables.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eoid.config import TrainConfig, dumps_toml, parse_part
from eoid.config_loading import read_toml
from eoid.devices import init_world
from eoid.errors import CacheMismatchError, ConfigError
from eoid.pipeline import run_sweep as sweep
from eoid.pipeline import study as studies
from eoid.pipeline import study_plan as plans
from eoid.pipeline.study_tables import collect_rows, write_tables
from eoid.pipeline.synth.scenes import synth_vocabulary_json
from eoid.pipeline.synth.world import generate_world
from eoid.teacher_cache.manifest import FORMAT_VERSION

ROOT = Path(__file__).resolve().parents[2]
STUDIES = sorted((ROOT / "configs" / "studies").glob("*.toml"))


def _study(tmp_path: Path, text: str) -> Path:
    (tmp_path / "base.toml").write_text("[data]\ntest_annotations = 't.json'\n")
    path = tmp_path / "study.toml"
    path.write_text('base = "base.toml"\n' + text)
    return path


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_every_shipped_study_parses_and_every_run_config_loads(path, tmp_path):
    study = studies.read_study(path)
    runs = plans.plan_study(study, tmp_path)
    assert len(runs) == sum(len(plans.expand_runs(v)) for v in study.variants)
    assert all(isinstance(r.cfg, TrainConfig) for r in runs)


def test_a_misspelled_variant_key_is_refused_with_the_nearest_key(tmp_path):
    path = _study(tmp_path, '[[variants]]\nname = "a"\nsett = ["loss.distill=0"]\n')
    with pytest.raises(ConfigError, match=r"unknown key 'sett'; did you mean 'set'\?"):
        studies.read_study(path)


def test_a_variant_naming_an_unknown_cache_is_refused(tmp_path):
    path = _study(
        tmp_path, '[caches.a]\npath = "c"\n[[variants]]\nname = "v"\ncache = "b"\n'
    )
    with pytest.raises(ConfigError, match="cache 'b' is not one of the study's"):
        studies.read_study(path)


def test_a_typo_in_a_variant_override_fails_before_any_training(tmp_path):
    path = _study(tmp_path, '[[variants]]\nname = "v"\nset = ["matcher.top_k=5"]\n')
    with pytest.raises(ConfigError, match="did you mean 'topk'"):
        plans.plan_study(studies.read_study(path), tmp_path / "out")


def test_a_variant_expands_to_the_product_of_its_over_values_and_seeds(tmp_path):
    path = _study(
        tmp_path,
        'seeds = [1, 2]\n[[variants]]\nname = "uc"\n'
        'over = { "data.setting" = ["uc0", "uc1", "uc2"] }\n',
    )
    runs = plans.plan_study(studies.read_study(path), tmp_path / "out")
    assert len(runs) == 3 * 2 and len({r.folder for r in runs}) == 6
    assert {(r.cfg.data.setting, r.cfg.optim.seed) for r in runs} == {
        (s, seed) for s in ("uc0", "uc1", "uc2") for seed in (1, 2)
    }
    assert runs[0].folder == tmp_path / "out" / "runs" / "uc" / "uc0_seed1"


def test_variant_overrides_beat_study_overrides_and_the_run_folder_is_the_studys():
    study = studies.Study(
        Path("s.toml"),
        "",
        ("full",),
        (),
        ("matcher.topk=5",),
        {},
        (
            studies.Variant(
                "v",
                "v",
                ROOT / "configs" / "hico_ua.toml",
                None,
                (7,),
                (),
                ("matcher.topk=1",),
                {},
                {},
            ),
        ),
    )
    (run,) = plans.plan_study(study, Path("o"), ("matcher.topk=9", "optim.epochs=2"))
    assert (
        run.cfg.matcher.topk == 1
        and run.cfg.optim.epochs == 2
        and run.cfg.optim.seed == 7
    )
    assert run.cfg.out == str(Path("o/runs/v/seed7"))


@pytest.mark.parametrize("num_parts", [1, 2, 3, 7])
def test_job_array_parts_split_the_runs_without_overlap_or_gaps(num_parts):
    runs = list(range(10))
    parts = [plans.runs_for_part(runs, i, num_parts) for i in range(num_parts)]
    assert sorted(x for p in parts for x in p) == runs


@pytest.mark.parametrize("text", ["3/3", "a/2", "1", "0/0"])
def test_bad_part_strings_are_refused(text):
    with pytest.raises(ConfigError, match="--part"):
        parse_part(text)


def test_table_rows_are_mean_and_std_over_each_variants_runs(tmp_path):
    path = _study(
        tmp_path,
        'seeds = [1, 2, 3]\nmetrics = ["full", "unseen"]\n'
        '[[variants]]\nname = "a"\n[[variants]]\nname = "b"\nseeds = [5]\n',
    )
    study = studies.read_study(path)
    runs = plans.plan_study(study, tmp_path / "out")
    rng = np.random.default_rng(0)
    written = {}
    for r in runs[:-1] + runs[-1:]:
        if r.run.key == "seed3":
            # one run of variant a not finished yet
            continue
        full, unseen = rng.uniform(0, 40, size=2)
        r.folder.mkdir(parents=True)
        (r.folder / "results.json").write_text(
            json.dumps({"mAP": {"full": full, "unseen": unseen}})
        )
        written.setdefault(r.variant.name, []).append((full, unseen))
    rows = collect_rows(
        study,
        {v.name: [r.folder for r in runs if r.variant == v] for v in study.variants},
    )
    write_tables(study, rows, tmp_path)
    table = {
        row["variant"]: row for row in csv.DictReader(open(tmp_path / "table.csv"))
    }
    for name, vals in written.items():
        arr = np.array(vals)
        assert float(table[name]["full_mean"]) == arr[:, 0].mean()
        assert float(table[name]["full_std"]) == arr[:, 0].std()
        assert float(table[name]["unseen_mean"]) == arr[:, 1].mean()
    assert table["a"]["runs_done"] == "2" and table["a"]["runs_total"] == "3"
    md = (tmp_path / "table.md").read_text()
    assert (
        f"{np.mean([v[0] for v in written['a']]):.2f} ±"
        f" {np.std([v[0] for v in written['a']]):.2f}" in md
    )
    assert (tmp_path / "table.png").stat().st_size > 1000


def test_a_study_showing_seen_and_unseen_adds_hm_averaged_over_its_runs(tmp_path):
    path = _study(
        tmp_path,
        'seeds = [1, 2]\nmetrics = ["seen", "unseen"]\n[[variants]]\nname = "a"\n',
    )
    study = studies.read_study(path)
    runs = plans.plan_study(study, tmp_path / "out")
    # run 1: Seen 60, Unseen 20 -> HM 30; run 2 (a results.json without "hm"): 40, 40 ->
    # HM 40. The table shows the mean of the runs' HMs, 35, not the HM of the mean Seen
    # and Unseen (45.0).
    for r, (seen, unseen) in zip(runs, ((60.0, 20.0), (40.0, 40.0))):
        r.folder.mkdir(parents=True)
        hm = {"hm": 30.0} if seen == 60.0 else {}
        (r.folder / "results.json").write_text(
            json.dumps({"mAP": {"seen": seen, "unseen": unseen, **hm}})
        )
    rows = collect_rows(study, {"a": [r.folder for r in runs]})
    write_tables(study, rows, tmp_path)
    (row,) = csv.DictReader(open(tmp_path / "table.csv"))
    assert float(row["hm_mean"]) == 35.0 and float(row["hm_std"]) == 5.0
    md = (tmp_path / "table.md").read_text()
    assert "| Seen | Unseen | HM |" in md and "35.00 ± 5.00" in md


def test_a_run_folder_made_by_another_config_is_refused_not_skipped(tmp_path):
    path = _study(tmp_path, '[[variants]]\nname = "v"\n')
    (run,) = plans.plan_study(studies.read_study(path), tmp_path / "out")
    run.folder.mkdir(parents=True)
    (run.folder / "config.toml").write_text('out = "elsewhere"\n[matcher]\ntopk = 10\n')
    with pytest.raises(ConfigError, match="trained with another config"):
        plans.check_same_config(run)


def test_a_run_folder_written_before_a_field_was_added_is_still_the_same_config(
    tmp_path,
):
    path = _study(tmp_path, '[[variants]]\nname = "v"\n')
    (run,) = plans.plan_study(studies.read_study(path), tmp_path / "out")
    run.folder.mkdir(parents=True)
    text = dumps_toml(run.cfg)
    assert "teacher_on_no_interaction = true\n" in text
    (run.folder / "config.toml").write_text(
        text.replace("teacher_on_no_interaction = true\n", "")
    )
    # the missing field has its default: nothing to refuse
    plans.check_same_config(run)


def test_a_variant_whose_cache_was_built_from_other_annotations_is_refused(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps(synth_vocabulary_json()))
    (tmp_path / "train.json").write_text("[]")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "manifest.json").write_text(
        json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "fingerprint": {"vocabulary": "0" * 16, "annotations_sha256": "f" * 64},
                "layout": {},
                "checksums": {},
                "config": {},
            }
        )
    )
    path = _study(
        tmp_path,
        f'set = ["data.dataset=\\"{tmp_path / "vocab.json"}\\"", '
        f'"data.train_annotations=\\"{tmp_path / "train.json"}\\""]\n'
        f'[caches.c]\npath = "{cache}"\n[[variants]]\nname = "v"\n',
    )
    runs = plans.plan_study(studies.read_study(path), tmp_path / "out")
    with pytest.raises(CacheMismatchError, match="variant 'v'"):
        sweep.check_cache_fits(runs)


def test_job_array_parts_refuse_to_build_a_missing_cache(tmp_path):
    path = _study(
        tmp_path,
        f'[caches.c]\nrecipe = "{ROOT / "configs" / "cache_synth.toml"}"\n'
        f'path = "{tmp_path / "nocache"}"\n[[variants]]\nname = "v"\n',
    )
    with pytest.raises(ConfigError, match="--caches-only"):
        sweep.run_sweep(path, tmp_path / "out", init_world(), part="0/2")


@pytest.mark.slow
def test_a_three_variant_study_runs_end_to_end_on_one_shared_cache(
    tmp_path, monkeypatch
):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    generate_world(tmp_path / "synth_world", 40, seed=0, progress=False)
    builds = []
    real_run_cache = sweep.run_cache
    monkeypatch.setattr(
        sweep,
        "run_cache",
        lambda cfg, w: builds.append(cfg.out) or real_run_cache(cfg, w),
    )
    study = ROOT / "configs" / "studies" / "synth_tiny.toml"
    text = sweep.run_sweep(study, "runs/synth_tiny", init_world())

    out = tmp_path / "runs" / "synth_tiny"
    table = list(csv.DictReader(open(out / "table.csv")))
    assert [row["variant"] for row in table] == ["eoid", "no_a_u_only", "no_teacher"]
    for row in table:
        results = json.loads(
            (out / "runs" / row["variant"] / "seed0" / "results.json").read_text()
        )["mAP"]
        for m in ("full", "seen", "unseen"):
            assert float(row[f"{m}_mean"]) == results[m]
    assert "| EoID |" in text and (out / "table.png").is_file()
    # one cache, built once, read in place by both distilling variants, absent from the
    # other
    assert builds == ["teacher_cache/synth"]
    caches = [
        read_toml(out / "runs" / v / "seed0" / "config.toml")["cache"]
        for v in ("eoid", "no_a_u_only", "no_teacher")
    ]
    assert caches == ["teacher_cache/synth", "teacher_cache/synth", ""]
    # a second invocation trains nothing and builds nothing
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/results.json")}
    sweep.run_sweep(study, "runs/synth_tiny", init_world())
    assert builds == ["teacher_cache/synth"]
    assert {
        p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/results.json")
    } == stamps


def _derived_study(tmp_path: Path, ensemble: str) -> Path:
    return _study(
        tmp_path,
        f'[caches.a]\npath = "{tmp_path / "a"}"\n[caches.b]\npath ='
        f' "{tmp_path / "b"}"\n{ensemble}\n[[variants]]\nname = "v"\ncache = "a"\n',
    )


@pytest.mark.parametrize(
    "table, message",
    [
        (
            '[caches.e]\nmerge = ["a", "c"]\npath = "e"',
            "'c' is not one of the study's caches",
        ),
        ('[caches.e]\nmerge = ["a", "b"]', "a merge needs `path"),
        (
            '[caches.e]\nmerge = ["a", "b"]\nrecipe = "r.toml"\npath = "e"',
            "one of `recipe`, `merge` and",
        ),
        (
            '[caches.e]\nmerge = ["a", "b"]\nrule = "median"\npath = "e"',
            "`rule` must be",
        ),
        (
            '[caches.e]\nrelabel = { from = "a", descriptons = "d.json" }\npath = "e"',
            "mean 'descriptions'",
        ),
        (
            (
                '[caches.e]\nrelabel = { from = "a", templates = "missing.txt" }\npath'
                ' = "e"'
            ),
            "is not a file",
        ),
        (
            (
                '[caches.e]\nrelabel = { from = "f" }\npath = "e"\n[caches.f]\nmerge ='
                ' ["e", "a"]\npath = "f"'
            ),
            "caches made from each other: e -> f -> e",
        ),
    ],
)
def test_a_merged_or_relabelled_cache_entry_is_checked_when_the_study_is_read(
    tmp_path, table, message
):
    with pytest.raises(ConfigError, match=message):
        studies.read_study(_derived_study(tmp_path, table))


def test_build_order_puts_every_source_before_the_caches_made_from_it(tmp_path):
    study = studies.read_study(
        _derived_study(
            tmp_path,
            '[caches.e]\nmerge = ["b", "r"]\npath = "e"\n'
            '[caches.r]\nrelabel = { from = "a" }\npath = "r"',
        )
    )
    assert studies.build_order(study.caches, {"e"}, "") == ["b", "a", "r", "e"]


def test_caches_only_makes_a_merge_and_a_relabel_after_their_sources(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    generate_world(tmp_path / "synth_world", 6, seed=0, progress=False)
    (tmp_path / "t.txt").write_text(
        "a picture of person {verb_ing} {object}\na photo of {object}\n"
    )
    recipe = ROOT / "configs" / "cache_synth.toml"
    ensemble = (
        '[caches.prompts]\nrelabel = { from = "synth", templates = "t.txt" }\npath ='
        ' "c/prompts"\n[caches.both]\nmerge = ["synth", "prompts"]\nweights = [3,'
        ' 1]\nrule = "RULE"\npath = "c/both"\n'
    )
    path = _study(
        tmp_path,
        f'[caches.synth]\nrecipe = "{recipe}"\n{ensemble.replace("RULE", "geometric")}'
        '[[variants]]\nname = "v"\ncache = "both"\n',
    )
    made = []
    real_merge = sweep.run_merge
    monkeypatch.setattr(sweep, "run_merge", lambda *a: made.append(a) or real_merge(*a))
    assert (
        sweep.run_sweep(path, tmp_path / "out", init_world(), caches_only=True)
        == "caches ready: both"
    )
    from eoid.teacher_cache.lookup import CacheReader

    both = CacheReader(tmp_path / "c" / "both")
    assert (
        both.manifest["merge"]["weights"] == [0.75, 0.25]
        and both.manifest["merge"]["rule"] == "geometric"
    )
    assert [m["path"] for m in both.manifest["merge"]["members"]] == [
        "teacher_cache/synth",
        "c/prompts",
    ]
    assert CacheReader(tmp_path / "c" / "prompts").fingerprint["template"] == [
        "a picture of person {verb_ing} {object}",
        "a photo of {object}",
    ]
    sweep.run_sweep(path, tmp_path / "out", init_world(), caches_only=True)
    # finished: checked, not made again
    assert len(made) == 1
    path.write_text(path.read_text().replace("geometric", "mean"))
    with pytest.raises(
        CacheMismatchError, match="rule: cache 'geometric', study 'mean'"
    ):
        sweep.run_sweep(path, tmp_path / "out", init_world(), caches_only=True)
