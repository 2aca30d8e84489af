"""benchmarks/hico_shaped.py writes what it claims: HICO-DET's vocabulary, counts, sizes
and JPEG bytes.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from eoid.pipeline.data.readers import read_annotations
from eoid.pipeline.data.vocab import load_vocabulary

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "hico_shaped", ROOT / "benchmarks" / "hico_shaped.py"
    )
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up there
    sys.modules.setdefault("hico_shaped", module)
    spec.loader.exec_module(module)
    return module


def test_a_small_world_is_read_by_the_hico_reader_with_real_shaped_counts_and_jpegs(
    tmp_path,
):
    gen = _generator()
    out = gen.write_hico_shaped(tmp_path / "w", num_train=40, num_test=10, seed=3)
    vocab = load_vocabulary("hico-det")
    train = read_annotations(out / "train.json", out / "images", vocab).records
    test = read_annotations(out / "test.json", out / "images", vocab).records
    assert (len(train), len(test)) == (40, 10)
    stats = json.loads((out / "stats.json").read_text())["train"]
    # HICO-DET train: 117,871 labels / 38,118 images = 3.09 per image; ~8.7 candidate
    # pairs. Forty images are a small sample: the bands are wide, but 1 label or 30
    # would fail.
    assert 2.0 <= stats["mean_labels"] <= 4.5
    assert 4.0 <= stats["mean_candidate_pairs"] <= 14.0
    sizes = Counter()
    for path in sorted((out / "images").glob("*.jpg")):
        with Image.open(path) as im:
            assert im.format == "JPEG"
            sizes[im.size] += 1
            if im.size == (640, 480):
                # A real 640x480 HICO photo is ~100-200 KB; flat noise would be 30 KB or
                # 400 KB.
                assert 80_000 <= path.stat().st_size <= 220_000
    assert sum(sizes.values()) == 50
    assert sizes.most_common(1)[0][0] == (640, 480)
    assert all(max(wh) <= 640 for wh in sizes)


def test_the_full_size_long_tail_keeps_rare_hois_rare_and_the_head_heavy():
    gen = _generator()
    vocab = load_vocabulary("hico-det")
    counts = gen.hoi_frequencies(vocab, np.random.default_rng(0))
    rare = np.zeros(600, bool)
    rare[vocab.rare_hois] = True
    assert (len(vocab.verbs), len(vocab.objects), len(vocab.hois), rare.sum()) == (
        117,
        80,
        600,
        138,
    )
    assert counts.sum() == gen.TRAIN_INSTANCES
    assert (counts[rare] < 10).all() and (counts[~rare] >= 10).all()
    # Long tail: the top 10% of HOIs hold most instances (HICO-DET's head dominates).
    top = np.sort(counts)[::-1][:60].sum() / counts.sum()
    assert top > 0.5


def test_the_same_seed_gives_the_same_annotations():
    gen = _generator()
    vocab = load_vocabulary("hico-det")
    assert gen.split_records("train", 20, 5, vocab) == gen.split_records(
        "train", 20, 5, vocab
    )
    assert gen.split_records("train", 20, 5, vocab) != gen.split_records(
        "train", 20, 6, vocab
    )
