"""The terminal of `eoid`: quiet libraries, what commands print, a graceful stop shown
as a saved run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from eoid.cli import main
from eoid.errors import Interrupted
from eoid.terminal import configure_logging

TINY_CONFIG = Path(__file__).resolve().parent / "data" / "tiny-clip.json"


@pytest.fixture
def restore_logging():
    root, ours = logging.getLogger(), logging.getLogger("eoid")
    handlers, levels = list(root.handlers), (root.level, ours.level)
    yield
    root.handlers[:] = handlers
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


def _emit_everything() -> None:
    logging.getLogger().info("open_clip style INFO on the root logger")
    logging.getLogger("matplotlib.font_manager").info("font search INFO")
    logging.getLogger("eoid.pipeline.run_train").info("eoid's own INFO")
    logging.getLogger("asyncio").warning("a library WARNING")


def test_library_info_lines_stay_out_of_the_terminal_and_eoid_info_reads_as_a_message(
    restore_logging, capsys
):
    configure_logging(verbose=False)
    _emit_everything()
    err = capsys.readouterr().err.splitlines()
    # a plain message, no "INFO eoid...:" prefix
    assert "eoid's own INFO" in err
    assert "WARNING asyncio: a library WARNING" in err
    assert not any("open_clip style" in line or "font search" in line for line in err)


def test_verbose_shows_the_libraries_info_lines_too(restore_logging, capsys):
    configure_logging(verbose=True)
    _emit_everything()
    err = capsys.readouterr().err
    assert "INFO root: open_clip style INFO on the root logger" in err
    assert "INFO matplotlib.font_manager: font search INFO" in err


def test_loading_an_open_clip_teacher_prints_no_log_line(
    restore_logging, capsys, tiny_weights
):
    from eoid.teacher_cache.teacher import load_teacher

    configure_logging(verbose=False)
    load_teacher(str(TINY_CONFIG), str(tiny_weights), "cpu")
    # open_clip logs eleven INFO lines per model
    assert capsys.readouterr().err == ""


def test_ranks_above_zero_keep_eoid_info_to_themselves(
    restore_logging, capsys, monkeypatch
):
    monkeypatch.setenv("RANK", "1")
    configure_logging(verbose=False)
    logging.getLogger("eoid.x").info("rank 1 progress")
    logging.getLogger("eoid.x").warning("rank 1 warning")
    err = capsys.readouterr().err
    assert "rank 1 progress" not in err and "rank 1 warning" in err


@pytest.mark.parametrize("signal_name,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_graceful_stop_prints_the_saved_run_and_resume_hint_and_exits_128_plus_the_signal(
    monkeypatch, tmp_path, signal_name, code
):
    import eoid.pipeline.run_train as rt

    def stopped(cfg, world, on_row=None):
        raise Interrupted(
            f"stopped by {signal_name} after epoch 2 (iteration 6); the run is saved in"
            f" {tmp_path}/checkpoint.pt",
            "Resume with the same command and --resume.",
            signal_name,
        )

    monkeypatch.setattr(rt, "run_train", stopped)
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path)])
    assert result.exit_code == code
    assert (
        f"stopped by {signal_name} after epoch 2" in result.output
        and "--resume" in result.output
    )
    assert "Error" not in result.output and "Traceback" not in result.output


def test_sweep_and_quickstart_say_that_running_the_same_command_resumes(
    monkeypatch, tmp_path
):
    import eoid.pipeline.run_quickstart as rq

    def stopped(out, seed=0, overrides=()):
        raise Interrupted(
            "quickstart stopped by SIGINT; the runs are saved",
            "Resume with --resume.",
            "SIGINT",
        )

    monkeypatch.setattr(rq, "run_quickstart", stopped)
    result = CliRunner().invoke(main, ["quickstart", "--out", str(tmp_path)])
    assert result.exit_code == 130
    assert (
        "Run the same command again to resume" in result.output
        and "--resume" not in result.output
    )


def test_synth_prints_what_it_wrote_not_a_repr(tmp_path):
    result = CliRunner().invoke(
        main, ["synth", "--out", str(tmp_path / "w"), "--images", "4"]
    )
    assert result.exit_code == 0, result.output
    # 4 images, a test fraction of 0.3: round(1.2) = 1 test image
    assert "3 training and 1 test images" in result.output
    assert (
        str(tmp_path / "w" / "vocabulary.json") in result.output
        and "--dataset" in result.output
    )
    assert "WorldPaths(" not in result.output and "PosixPath" not in result.output


def test_data_check_on_a_file_of_another_vocabulary_suggests_the_vocabulary_beside_it(
    tmp_path,
):
    runner = CliRunner()
    runner.invoke(main, ["synth", "--out", str(tmp_path / "w"), "--images", "6"])
    result = runner.invoke(
        main,
        [
            "data",
            "check",
            str(tmp_path / "w" / "train.json"),
            "--images",
            str(tmp_path / "w" / "images"),
        ],
    )
    assert result.exit_code == 1
    assert "another vocabulary than 'hico-det'" in result.output
    assert f"--dataset {tmp_path / 'w' / 'vocabulary.json'}" in result.output
    result = runner.invoke(
        main,
        [
            "data",
            "check",
            str(tmp_path / "w" / "train.json"),
            "--images",
            str(tmp_path / "w" / "images"),
            "--dataset",
            str(tmp_path / "w" / "vocabulary.json"),
        ],
    )
    assert result.exit_code == 0 and "hint" not in result.output


@pytest.mark.parametrize(
    "args, words, help_of",
    [
        (["trian"], "No such command 'trian'. Did you mean 'train'?", "eoid"),
        (["--bogus"], "No such option '--bogus'", "eoid"),
        (["train", "--set"], "'--set' requires an argument", "eoid train"),
        (
            ["cache-teacher", "--bogus"],
            "No such option '--bogus'",
            "eoid cache-teacher",
        ),
        (
            ["cache", "merge", "a", "b", "--rule", "median"],
            "'median' is not one of",
            "eoid cache merge",
        ),
        (["cache", "merg"], "No such command 'merg'", "eoid cache"),
        (["data", "check", "--nope"], "No such option '--nope'", "eoid data check"),
        (["export", "--out", "m.onnx"], "Missing option '--checkpoint'", "eoid export"),
    ],
)
def test_a_mistyped_command_line_is_one_line_naming_the_help_to_read_and_exits_1(
    args, words, help_of
):
    result = CliRunner().invoke(main, args, prog_name="eoid")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0]
    assert lines[0].endswith(f"(see `{help_of} --help`)")


def test_asking_for_help_still_prints_the_help():
    result = CliRunner().invoke(main, ["cache", "merge", "--help"], prog_name="eoid")
    assert result.exit_code == 0 and "Usage: eoid cache merge" in result.output


@pytest.mark.parametrize(
    "args, words",
    [
        (
            ["evaluate", "--blend-weight", "1.5", "--verb-classifier", "blend"],
            "verbs.blend_weight = 1.5 must lie in [0, 1]",
        ),
        (
            ["predict", "x.png", "--set", "verbs.blend_weight=-0.5"],
            "verbs.blend_weight = -0.5 must lie in [0, 1]",
        ),
        (
            ["predict", "x.png", "--set", "verbs.classifier=both"],
            "verbs.classifier = \"both\" must be one of 'student', 'clip', 'blend'",
        ),
    ],
)
def test_a_bad_verb_classifier_value_is_one_line(args, words):
    result = CliRunner().invoke(main, args, prog_name="eoid")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], (
        result.output
    )
