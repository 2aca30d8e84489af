"""benchmarks/scale.py's arithmetic: the growth exponent and the start-up read from a
train log.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _scale():
    spec = importlib.util.spec_from_file_location(
        "scale", ROOT / "benchmarks" / "scale.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("scale", module)
    spec.loader.exec_module(module)
    return module


def test_the_exponent_of_a_power_law_is_its_power_and_unusable_points_are_left_out():
    scale = _scale()
    ns = [1000, 4000, 16000, 38118]
    assert scale.fit_exponent(ns, [2.0 * n**1.5 for n in ns]) == pytest.approx(1.5)
    assert scale.fit_exponent(ns, [7.0] * 4) == pytest.approx(0.0, abs=1e-12)
    assert scale.fit_exponent(ns, [None, 0.0, 3.0, None]) is None  # one usable point


def test_startup_is_the_first_iteration_less_tqdms_time_for_it_in_the_last_command(
    tmp_path,
):
    scale = _scale()
    log = tmp_path / "train.log"
    # two commands in one log: only the last one's bar counts; its iteration 1 took 0:52
    # and a later postfix update of the same count (1/500 at 01:40) must not be read
    # instead
    log.write_text(
        "$ eoid train (a killed try)\nepoch 1/90:   0%| 1/500 [03:10<...]\n"
        "$ eoid train\nepoch 1/90:   0%| 0/500 [00:00<?]\r 1/500 [00:52<7:00:00]"
        "\r 1/500 [01:40<7:00:00]\r 2/500 [01:41<]\n"
    )
    row = scale.startup_s({"first_iteration_s": 65.0}, log)
    assert row["startup_s"] == pytest.approx(13.0)
    assert "startup_s" not in scale.startup_s({}, log)


def test_a_command_is_killed_once_its_progress_bar_passes_half_and_not_before(tmp_path):
    scale = _scale()
    log = tmp_path / "run.log"
    # an earlier run's bar does not count
    log.write_text("$ an earlier command\n 9/10 [00:01]\n")
    bar = (
        "import sys, time\n"
        "for i in range(11):\n"
        "    print(f'{i}/10 [00:0{i}]', file=sys.stderr, flush=True)\n"
        "    time.sleep(0.4)\n"
    )
    row = scale.measure([sys.executable, "-c", bar], log, kill_at=0.5)
    assert "killed_at_s" in row
    seen = [line for line in log.read_text().splitlines() if line.endswith("]")][1:]
    # killed at 5/10 (the poll may see it a step or two late)
    assert 5 <= len(seen) - 1 <= 8
