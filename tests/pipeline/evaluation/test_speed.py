"""The inference cost per image: stages summed after the warm-up batches, divided by the
images timed.
"""

import pytest

from eoid.pipeline.evaluation.speed import StageClock, format_speed, per_image_ms


class FakeClock:
    """A clock that reads `t`; the test moves it forward by hand."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_warm_up_batch_runs_but_is_not_counted():
    fake = FakeClock()
    clock = StageClock("cpu", warmup_batches=1, now=fake)
    # batch 0 (warm-up, 2 images): student 5 s; batches 1 and 2 (2 images each): student
    # 0.1 s, post-processing 0.02 s. Timed: 4 images, 0.2 s student, 0.04 s post -> 50
    # ms and 10 ms.
    for student_s, post_s in ((5.0, 5.0), (0.1, 0.02), (0.1, 0.02)):
        with clock.stage("student"):
            fake.t += student_s
        with clock.stage("postprocess"):
            fake.t += post_s
        clock.end_batch(2)
    report = clock.report(device="cpu", dtype="float32", batch_size=2, threads=2)
    assert report["images_timed"] == 4 and report["warmup_batches"] == 1
    ms = report["ms_per_image"]
    assert ms["student"] == pytest.approx(50.0) and ms["postprocess"] == pytest.approx(
        10.0
    )
    assert ms["total"] == pytest.approx(60.0)
    assert "student 50.00, post-processing 10.00; total 60.00" in format_speed(report)
    assert (
        "cpu, float32, batch 2, 2 threads; 4 images after 1 warm-up batch"
        in format_speed(report)
    )


def test_a_run_of_only_warm_up_says_it_measured_nothing():
    clock = StageClock("cpu", warmup_batches=1, now=FakeClock())
    with clock.stage("student"):
        pass
    clock.end_batch(1)
    report = clock.report(device="cpu", dtype="float32", batch_size=2)
    assert report["ms_per_image"] is None and report["images_timed"] == 0
    assert "not measured" in format_speed(report)


def test_per_image_ms_of_no_images_is_none():
    assert per_image_ms({"student": 1.0}, 0) is None
