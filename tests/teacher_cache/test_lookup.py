import numpy as np

from eoid.teacher_cache.lookup import lookup_pairs

H = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
OBJ = np.array([[20, 20, 30, 30], [50, 50, 60, 60]], np.float32)
CLS = np.array([1, 2])
PROBS = np.array([[1, 0, 0], [0, 0.5, 0.5]], np.float16)


def test_a_query_equal_to_a_cached_pair_gets_its_row():
    p, hit = lookup_pairs(H[[1]], OBJ[[1]], CLS[[1]], H, OBJ, CLS, PROBS, 0.5)
    assert (
        hit.tolist() == [True]
        and p.tolist() == [[0, 0.5, 0.5]]
        and p.dtype == np.float32
    )


def test_a_query_of_another_object_class_misses_even_with_identical_boxes():
    p, hit = lookup_pairs(H[[0]], OBJ[[0]], np.array([2]), H, OBJ, CLS, PROBS, 0.5)
    assert hit.tolist() == [False] and p.tolist() == [[0, 0, 0]]


def test_the_pair_iou_is_the_smaller_of_the_human_and_object_ious():
    # human identical (IoU 1); object shifted by 5 px of 10: IoU = 50 / 150 = 1/3 -> min
    # 1/3
    q_o = OBJ[[0]] + [5, 0, 5, 0]
    _, hit_low = lookup_pairs(H[[0]], q_o, CLS[[0]], H, OBJ, CLS, PROBS, 0.34)
    _, hit_ok = lookup_pairs(H[[0]], q_o, CLS[[0]], H, OBJ, CLS, PROBS, 0.33)
    assert hit_low.tolist() == [False] and hit_ok.tolist() == [True]


def test_the_best_scoring_cached_pair_wins():
    cached_o = np.array([[20, 20, 30, 30], [21, 21, 31, 31]], np.float32)
    p, hit = lookup_pairs(
        H[[0]],
        np.array([[21, 21, 31, 31]], np.float32),
        np.array([1]),
        H,
        cached_o,
        np.array([1, 1]),
        PROBS,
        0.5,
    )
    assert hit.tolist() == [True] and p.tolist() == [[0, 0.5, 0.5]]


def test_perturbed_copies_of_random_cached_pairs_find_their_own_rows():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (40, 2))
    h = np.concatenate([xy, xy + rng.uniform(20, 80, (40, 2))], 1).astype(np.float32)
    xy = rng.uniform(0, 500, (40, 2))
    o = np.concatenate([xy, xy + rng.uniform(20, 80, (40, 2))], 1).astype(np.float32)
    cls = rng.integers(0, 5, 40)
    probs = np.eye(40, dtype=np.float16)
    p, hit = lookup_pairs(
        h + rng.uniform(-1, 1, h.shape),
        o + rng.uniform(-1, 1, o.shape),
        cls,
        h,
        o,
        cls,
        probs,
        0.5,
    )
    assert hit.all() and (p.argmax(1) == np.arange(40)).all()


def test_no_cached_pairs_means_every_query_misses():
    p, hit = lookup_pairs(
        H,
        OBJ,
        CLS,
        np.zeros((0, 4)),
        np.zeros((0, 4)),
        np.zeros(0),
        np.zeros((0, 3)),
        0.5,
    )
    assert p.shape == (2, 3) and not hit.any()
