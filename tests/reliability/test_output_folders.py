"""An output folder that cannot be written is one line naming the folder and the fix,
for every command that writes, before any work is done (never a PermissionError
traceback).

Two ways to make a folder unwritable: a path under a regular file (works for root too),
and mode bits (0o555). Root ignores mode bits, so as root that test runs the commands in
a subprocess without the capabilities that let root write anywhere (setpriv
--bounding-set).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from eoid.cli import main

from tiny_train import ROOT, TINY, TINY_CLIP, subprocess_env

SETS = [a for s in TINY for a in ("--set", s)]


def writing_commands(
    synth: Path, run: Path, cache: Path, weights: Path, tmp: Path
) -> dict[str, object]:
    """Each writing command as a function of its output path (a folder, or a file in
    that folder).
    """
    vocab, ann, images = (
        str(synth / "vocabulary.json"),
        str(synth / "train.json"),
        str(synth / "images"),
    )
    test_ann = str(synth / "test.json")
    ckpt = str(run / "checkpoint.pt")
    image = str(next((synth / "images").glob("*.png")))
    predictions = tmp / "predictions.json"
    predictions.write_text("[]")
    study = tmp / "study.toml"
    study.write_text(
        f'base = "{ROOT / "configs" / "synth_ua.toml"}"\nseeds = [0]\n'
        f"set = {json.dumps([*TINY, f'data.dataset={vocab}', f'data.train_annotations={ann}', f'data.train_images={images}', f'data.test_annotations={test_ann}', f'data.test_images={images}', 'optim.epochs=1'])}\n"  # noqa: E501
        '[[variants]]\nname = "plain"\ncache = ""\n'
    )
    clip = ["--clip", str(TINY_CLIP), "--clip-weights", str(weights)]
    return {
        "cache-teacher": lambda out: [
            "cache-teacher",
            "--annotations",
            ann,
            "--images",
            images,
            "--dataset",
            vocab,
            *clip,
            "--out",
            out,
            "--set",
            "teacher.num_workers=0",
        ],
        "train": lambda out: [
            "train",
            "--annotations",
            ann,
            "--images",
            images,
            "--out",
            out,
            *SETS,
            "--set",
            f"data.dataset={vocab}",
            "--set",
            "optim.epochs=1",
        ],
        "evaluate --checkpoint": lambda out: [
            "evaluate",
            "--checkpoint",
            ckpt,
            "--annotations",
            test_ann,
            "--images",
            images,
            "--out",
            out,
        ],
        "evaluate --predictions": lambda out: [
            "evaluate",
            "--predictions",
            str(predictions),
            "--annotations",
            test_ann,
            "--vocabulary",
            vocab,
            "--out",
            out,
        ],
        "predict": lambda out: ["predict", image, "--checkpoint", ckpt, "--out", out],
        "synth": lambda out: ["synth", "--out", out, "--images", "4"],
        "cache relabel": lambda out: [
            "cache",
            "relabel",
            str(cache),
            "--gamma",
            "50",
            "--out",
            out,
        ],
        "cache merge": lambda out: [
            "cache",
            "merge",
            str(cache),
            str(cache),
            "--out",
            out,
        ],
        "cache inspect --png": lambda out: [
            "cache",
            "inspect",
            str(cache),
            "--png",
            f"{out}/grid.png",
            "--samples",
            "2",
        ],
        "sweep": lambda out: ["sweep", str(study), "--out", out],
        "pseudo-label": lambda out: [
            "pseudo-label",
            "--checkpoint",
            ckpt,
            "--coco",
            ann,
            "--images",
            images,
            "--out",
            f"{out}/pseudo.json",
        ],
        "mix": lambda out: ["mix", "--source", ann, images, vocab, "--out", out],
        "evaluate-vcoco": lambda out: [
            "evaluate-vcoco",
            "--checkpoint",
            ckpt,
            "--annotations",
            ann,
            "--images",
            images,
            "--out",
            out,
        ],
        "synth-teacher": lambda out: [
            "synth-teacher",
            "--out",
            f"{out}/w.safetensors",
            "--steps",
            "1",
        ],
        "quickstart": lambda out: ["quickstart", "--out", out],
    }


COMMANDS = [
    "cache-teacher",
    "train",
    "evaluate --checkpoint",
    "evaluate --predictions",
    "predict",
    "synth",
    "cache relabel",
    "cache merge",
    "cache inspect --png",
    "sweep",
    "pseudo-label",
    "mix",
    "evaluate-vcoco",
    "synth-teacher",
    "quickstart",
]


@pytest.fixture(scope="module")
def commands(synth, trained_run, cache, clip_weights, tmp_path_factory):
    return writing_commands(
        synth, trained_run, cache, clip_weights, tmp_path_factory.mktemp("inputs")
    )


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output[-3000:]
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize("name", COMMANDS)
def test_an_output_path_under_a_regular_file_is_one_line_naming_the_folder(
    commands, tmp_path, name
):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")
    out = blocker / "out"
    result = CliRunner().invoke(main, commands[name](str(out)))
    assert result.exit_code == 1, result.output[-3000:]
    line = _one_error_line(result.output)
    assert str(blocker) in line and "--out" in line
    assert blocker.read_text() == "a file where a folder should be"


SCRIPT = """
import json, sys
from click.testing import CliRunner
from eoid.cli import main
sys.path.insert(0, {tests!r})
from test_output_folders import writing_commands
from pathlib import Path
commands = writing_commands(Path({synth!r}), Path({run!r}), Path({cache!r}), Path({weights!r}),
                            Path({tmp!r}))
report = {{}}
for name, out in {todo!r}:
    args = ["report", out] if name == "report" else commands[name](out)
    result = CliRunner().invoke(main, args)
    report[name] = [result.exit_code, result.output[-3000:]]
print(json.dumps(report))
"""


@pytest.mark.slow
def test_a_read_only_output_folder_is_one_line_naming_it_for_every_command(
    synth, trained_run, cache, clip_weights, tmp_path
):
    locked = tmp_path / "read_only"
    locked.mkdir()
    # `eoid report RUN` writes into the run folder itself
    run = locked / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns(".lock"))
    todo = [(name, str(locked / "out")) for name in COMMANDS] + [("report", str(run))]
    locked.chmod(0o555)
    run.chmod(0o555)
    script = SCRIPT.format(
        tests=str(Path(__file__).parent),
        synth=str(synth),
        run=str(trained_run),
        cache=str(cache),
        weights=str(clip_weights),
        tmp=str(tmp_path),
        todo=todo,
    )
    drop_root = (
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
        if os.geteuid() == 0
        else []
    )
    if drop_root and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: mode bits cannot be tested")
    try:
        done = subprocess.run(
            [*drop_root, sys.executable, "-c", script],
            cwd=ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        locked.chmod(0o755)
        run.chmod(0o755)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (code, output) in report.items():
        assert code == 1, f"{name}: {output}"
        line = _one_error_line(output)
        where = str(run) if name == "report" else str(locked)
        assert where in line and "writ" in line, f"{name}: {line}"
    # nothing was created
    assert sorted(p.name for p in locked.iterdir()) == ["run"]
