"""The quickstart's printed table: Full / Seen / Unseen and their HM per run."""

from eoid.pipeline.run_quickstart import format_summary


def test_the_summary_table_shows_hm_and_computes_it_for_an_older_summary():
    summary = {
        "eoid": {"full": 50.0, "seen": 60.0, "unseen": 20.0, "hm": 30.0},
        # written before HM was added: 2 * 40 * 10 / 50 = 16
        "baseline": {"full": 30.0, "seen": 40.0, "unseen": 10.0},
        "teacher_zero_shot_accuracy": 80.0,
        "teacher_zero_shot_accuracy_unseen_verbs": 70.0,
        "seconds": 12.0,
    }
    header, eoid, baseline = format_summary(summary).splitlines()[:3]
    assert header.split()[-1] == "HM"
    assert eoid.split()[-1] == "30.00" and baseline.split()[-1] == "16.00"
