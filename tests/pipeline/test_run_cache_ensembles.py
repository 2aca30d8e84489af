"""Prompt ensembles and descriptions through `eoid cache relabel`, teacher ensembles
through `cache merge`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.pipeline.test_run_cache import (
    TINY_CONFIG,
    TINY_VOCAB,
    WORLD,
    cache_bytes,
    config,
    make_world,
)

from eoid.errors import CacheMismatchError, ConfigError
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.run_cache import run_cache
from eoid.pipeline.run_cache_merge import run_merge
from eoid.pipeline.run_cache_relabel import relabel_probs, run_relabel
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.teacher import load_teacher

T1 = "a picture of person {verb_ing} {object}"  # the reference cache's template
T2 = "a photo of a person {verb_ing} a {object}"
SCORED = [
    "hold person",
    "hold sports_ball",
    "kick sports_ball",
    "hold cup",
    "drink_with cup",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), num_images=8)


@pytest.fixture(scope="module")
def reference(world, tiny_weights, tmp_path_factory) -> Path:
    return run_cache(
        config(world, tiny_weights, tmp_path_factory.mktemp("ref") / "cache"), WORLD
    )


@pytest.fixture(scope="module")
def other_teacher(world, tiny_weights, tmp_path_factory) -> Path:
    """A second cache of the same pairs: the same model with other prompts and gamma."""
    return run_cache(
        config(
            world,
            tiny_weights,
            tmp_path_factory.mktemp("other") / "cache",
            template=T2,
            gamma=30.0,
        ),
        WORLD,
    )


def _file(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path / name


def test_relabel_with_one_template_in_a_file_gives_the_single_template_bytes(
    reference, world, tiny_weights, tmp_path
):
    plain = run_relabel(reference, tmp_path / "plain", template=T2)
    listed = run_relabel(
        reference,
        tmp_path / "listed",
        templates=_file(tmp_path, "t.txt", f"# one\n{T2}\n"),
    )
    a, b = cache_bytes(plain), cache_bytes(listed)
    ma, mb = (json.loads(x.pop("manifest.json")) for x in (a, b))
    # every array, plan.json and meta.json
    assert a == b
    assert ma == {k: v for k, v in mb.items() if k != "prompt_files"}
    # and the rows are those of the single-prompt computation, to the last bit
    reader, vocab = CacheReader(listed, load_embeddings=True), load_vocabulary(world[2])
    text = load_teacher(str(TINY_CONFIG), str(tiny_weights)).encode_texts(
        vocab.prompts(T2)
    )
    expected = relabel_probs(
        reader.image_emb, text, reader.object_class, vocab, reader.fingerprint["gamma"]
    )
    assert np.array_equal(reader.verb_probs, expected)
    assert reader.fingerprint["template"] == T2
    assert reader.fingerprint["prompts_sha256"] == mf.prompts_sha256(vocab.prompts(T2))


def test_a_prompt_ensemble_averages_each_hois_unit_template_embeddings(
    reference, world, tiny_weights, tmp_path
):
    ensemble = CacheReader(
        run_relabel(
            reference,
            tmp_path / "ens",
            templates=_file(tmp_path, "t.json", json.dumps([T1, T2])),
        )
    )
    vocab = load_vocabulary(world[2])
    teacher = load_teacher(str(TINY_CONFIG), str(tiny_weights))
    one, two = (
        teacher.encode_texts(vocab.prompts(T1)),
        teacher.encode_texts(vocab.prompts(T2)),
    )
    from eoid.teacher_cache import store_reads

    stored = torch.from_numpy(
        store_reads.load_arrays(ensemble.path, ("text_emb",))["text_emb"]
    )
    assert torch.allclose(stored, F.normalize(one + two, dim=-1), atol=1e-6)
    meta = json.loads((ensemble.path / "meta.json").read_text())
    assert meta["prompt_sets"][0] == [vocab.prompts(T1)[0], vocab.prompts(T2)[0]]
    # two caches that differ only in their prompts are told apart by their fingerprints
    single = CacheReader(reference)
    diffs = mf.compare_fingerprints(ensemble.fingerprint, single.fingerprint)
    assert [d.split(":")[0] for d in diffs] == ["prompt template", "prompts"]
    assert ensemble.fingerprint["template"] == [T1, T2]
    assert not np.allclose(ensemble.verb_probs, single.verb_probs, atol=1e-3)


def test_descriptions_alone_score_each_hoi_against_its_own_text(
    reference, world, tiny_weights, tmp_path
):
    texts = {name: f"someone doing {name} in a drawing" for name in SCORED}
    texts["hold cup"] = ["a hand around a cup", "a person with a cup"]
    path = _file(tmp_path, "d.json", json.dumps(texts))
    described = CacheReader(
        run_relabel(reference, tmp_path / "desc", descriptions=path)
    )
    teacher = load_teacher(str(TINY_CONFIG), str(tiny_weights))
    from eoid.teacher_cache import store_reads

    stored = store_reads.load_arrays(described.path, ("text_emb",))["text_emb"]
    hois = [
        f"{TINY_VOCAB['verbs'][v]['name']} {TINY_VOCAB['objects'][o]['name']}"
        for v, o in TINY_VOCAB["hois"]
    ]
    kick = hois.index("kick sports_ball")
    # (to float32 rounding: the text tower's matmuls differ with the batch they run in)
    assert np.allclose(
        stored[kick],
        teacher.encode_texts([texts["kick sports_ball"]])[0].numpy(),
        atol=1e-6,
    )
    cup = teacher.encode_texts(texts["hold cup"])
    assert np.allclose(
        stored[hois.index("hold cup")],
        F.normalize(cup.mean(0), dim=-1).numpy(),
        atol=1e-6,
    )
    assert (
        described.fingerprint["template"] == []
        and len(described.fingerprint["descriptions_sha256"]) == 64
    )
    # with templates too: another prompt set, another fingerprint
    both = CacheReader(
        run_relabel(
            reference,
            tmp_path / "both",
            descriptions=path,
            templates=_file(tmp_path, "t.txt", f"{T1}\n{T2}\n"),
        )
    )
    assert both.fingerprint["prompts_sha256"] != described.fingerprint["prompts_sha256"]


def test_a_descriptions_file_missing_a_scored_hoi_is_refused_naming_it(
    reference, tmp_path
):
    texts = {name: "x" for name in SCORED if name != "kick sports_ball"}
    with pytest.raises(ConfigError, match="no description for HOI 'kick sports_ball'"):
        run_relabel(
            reference,
            tmp_path / "out",
            descriptions=_file(tmp_path, "d.json", json.dumps(texts)),
        )
    texts = {**texts, "kick sports_ball": "x", "kick sport_ball": "y"}
    with pytest.raises(
        ConfigError,
        match="'kick sport_ball' names no HOI.*did you mean 'kick sports_ball'",
    ):
        run_relabel(
            reference,
            tmp_path / "out",
            descriptions=_file(tmp_path, "e.json", json.dumps(texts)),
        )
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_bad_template_in_a_templates_file_names_its_line(reference, tmp_path):
    path = _file(tmp_path, "t.txt", f"{T1}\n\na photo of {{verb}}\n")
    with pytest.raises(
        ConfigError, match=r"t\.txt line 3: template 'a photo of \{verb\}' has unknown"
    ):
        run_relabel(reference, tmp_path / "out", templates=path)


# ---------------------------------------------------------------- merge


def test_a_cache_merged_with_itself_holds_its_rows_under_a_merge_fingerprint(
    reference, world, tmp_path
):
    from eoid.pipeline.run_cache_verify import run_verify

    merged = CacheReader(run_merge([reference, reference], tmp_path / "m"))
    # an ordinary cache
    assert run_verify(merged.path, world[0], world[1], str(world[2]))["ok"]
    single = CacheReader(reference)
    # 0.5 p + 0.5 p = p exactly
    assert np.array_equal(merged.verb_probs, single.verb_probs)
    fp = merged.fingerprint
    assert fp["model"] == "merge(mean; tiny-clip, tiny-clip)" and fp[
        "merge_weights"
    ] == [0.5, 0.5]
    assert fp["gamma"] == [single.fingerprint["gamma"]] * 2
    assert {k: fp[k] for k in ("vocabulary", "annotations_sha256", "num_pairs")} == {
        k: single.fingerprint[k]
        for k in ("vocabulary", "annotations_sha256", "num_pairs")
    }
    members = merged.manifest["merge"]["members"]
    assert [m["path"] for m in members] == [str(reference)] * 2
    assert members[0]["fingerprint"] == single.fingerprint
    geometric = CacheReader(
        run_merge([reference, reference], tmp_path / "g", rule="geometric")
    )
    assert np.allclose(geometric.verb_probs, single.verb_probs, atol=1e-6)


def test_merge_rows_follow_the_weights_and_the_rule(
    reference, other_teacher, world, tmp_path
):
    a, b = CacheReader(reference).verb_probs, CacheReader(other_teacher).verb_probs
    mean = CacheReader(
        run_merge([reference, other_teacher], tmp_path / "m", weights="3,1")
    )
    assert np.allclose(mean.verb_probs, 0.75 * a + 0.25 * b, atol=1e-6)
    geo = CacheReader(
        run_merge(
            [reference, other_teacher], tmp_path / "g", weights="1,1", rule="geometric"
        )
    )
    # this vocabulary has two valid verbs per object besides no_interaction: p = sqrt(a
    # b), renormalised
    root = np.sqrt(a.astype(np.float64) * b)
    assert np.allclose(geo.verb_probs, root / root.sum(1, keepdims=True), atol=1e-6)
    assert not np.allclose(geo.verb_probs, mean.verb_probs, atol=1e-3)


@pytest.mark.parametrize(
    "weights, message",
    [("1", "1 weight"), ("1,-1", "at least 0"), ("a,b", "one number")],
)
def test_bad_weights_are_refused_before_any_work(reference, tmp_path, weights, message):
    with pytest.raises(ConfigError, match=message):
        run_merge([reference, reference], tmp_path / "m", weights=weights)


def test_merge_refuses_a_cache_of_other_annotations(reference, tiny_weights, tmp_path):
    other_world = make_world(tmp_path / "w", num_images=8, seed=3)
    other = run_cache(config(other_world, tiny_weights, tmp_path / "other"), WORLD)
    with pytest.raises(
        CacheMismatchError,
        match=r"does not hold the pairs of .*annotation file \(sha256\)",
    ):
        run_merge([reference, other], tmp_path / "m")
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_merge_refuses_a_cache_of_another_vocabulary(reference, world, tmp_path):
    vocab = json.loads(Path(world[2]).read_text())
    vocab["verbs"][1] = {"name": "catch", "phrase": "catching"}
    (tmp_path / "v.json").write_text(json.dumps(vocab))
    renamed = run_relabel(
        reference, tmp_path / "renamed", dataset=str(tmp_path / "v.json")
    )
    with pytest.raises(CacheMismatchError, match="vocabulary fingerprint"):
        run_merge([reference, renamed], tmp_path / "m")


def test_merge_refuses_a_cache_whose_pair_rows_differ(reference, tmp_path):
    # same fingerprint, one box moved: rewrite the copy's plan array through the store
    import zarr

    from eoid.teacher_cache import store

    moved = tmp_path / "moved"
    shutil.copytree(reference, moved)
    group = zarr.open_group(str(moved), mode="r+")
    boxes = group["human_xyxy"][...]
    boxes[5, 0] += 1.0
    group["human_xyxy"][...] = boxes
    manifest = json.loads((moved / "manifest.json").read_text())
    files = [p for p in (moved / "human_xyxy").rglob("*") if p.is_file()]
    manifest["checksums"].update(store.file_checksums(moved, files))
    (moved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheMismatchError, match="human_xyxy differs first at row 5"):
        run_merge([reference, moved], tmp_path / "m")


def test_relabel_refuses_a_merged_cache_with_the_fix(reference, tmp_path):
    merged = run_merge([reference, reference], tmp_path / "m")
    with pytest.raises(
        CacheMismatchError, match="a merged cache .*Relabel each member, then merge"
    ):
        run_relabel(merged, tmp_path / "r", gamma=10)


def test_a_merge_killed_after_one_shard_finishes_to_the_same_bytes_when_rerun(
    reference, other_teacher, tmp_path, monkeypatch
):
    from eoid.teacher_cache import store

    whole = run_merge([reference, other_teacher], tmp_path / "whole", rule="geometric")
    real, count = store.write_shard, [0]

    def killed_after_one(*args, **kwargs):
        if count[0] >= 1:
            raise KeyboardInterrupt("simulated kill")
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_shard", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        run_merge([reference, other_teacher], tmp_path / "cut", rule="geometric")
    monkeypatch.undo()
    with pytest.raises(CacheMismatchError, match="unfinished"):
        CacheReader(tmp_path / "cut")
    run_merge([reference, other_teacher], tmp_path / "cut", rule="geometric")
    assert cache_bytes(tmp_path / "cut") == cache_bytes(whole)
    # a finished merge is not rewritten by another one of other members
    with pytest.raises(CacheMismatchError, match="finished cache"):
        run_merge([reference, other_teacher], tmp_path / "cut", rule="mean")


def test_relabel_rows_do_not_depend_on_how_many_are_computed_at_once():
    # relabel computes a bounded chunk at a time to bound its temporaries; each row
    # must be its own pair's, whatever the chunk (the matrix product of one row
    # may round its last bit differently from that of many)
    vocab = load_vocabulary("hico-det")
    rng = np.random.default_rng(0)
    emb = F.normalize(torch.from_numpy(rng.normal(size=(1000, 32))), dim=1)
    text = F.normalize(torch.from_numpy(rng.normal(size=(600, 32))).float(), dim=1)
    objects = rng.integers(0, len(vocab.objects), 1000)
    emb16 = emb.numpy().astype(np.float16)
    whole = relabel_probs(emb16, text, objects, vocab, 100.0, chunk=1000)
    for chunk in (1, 7, 64, 999):
        got = relabel_probs(emb16, text, objects, vocab, 100.0, chunk=chunk)
        np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-7, err_msg=chunk)
