"""The commands of the README and docs/, run as written, so the docs cannot drift from
the CLI.

Every `eoid ...` command line in the code blocks of README.md and docs/*.md runs, page
by page in PAGES order and in page order within a page, in one folder laid out as the
docs assume (configs/, data/hico_20160224_det/...), with the data swapped for a small
generated world and the CLIP teacher for the shipped small one: a few words of the
command are replaced (SWAP_TEXT) and the heavy parts of the recipe are overridden by
arguments added at the end (SWAP_ARGS, `--set` wins over flags and files). One world and
one cache serve every page, so a page may use what an earlier page built. A command that
needs GPUs, torchrun, Slurm, real weights or HICO-DET itself is listed in SKIP with the
reason; a command that is neither run nor listed fails the test, and so does a page of
docs/ missing from PAGES. Every command, the skipped ones too, must parse (its options
exist), and so must every option of the `eoid ...` synopses in the pages' tables.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from eoid.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# the order the commands run in
PAGES = [README] + [
    ROOT / "docs" / f"{name}.md"
    for name in (
        "installing",
        "data",
        "teacher-cache",
        "commands",
        "import-export",
        "reproducing",
        "teachers",
        "distributed",
        "synthetic-world",
        "guarantees",
        "benchmarks",
        "results",
        "development",
        "config-reference",
    )
]
VOCAB = "world/vocabulary.json"
HICO = "data/hico_20160224_det"

SWAP_TEXT = {  # parts of README arguments -> their stand-ins on the generated world
    "RN50x16-quickgelu": "eoid-synth-clip",
    "/path/to/RN50x16.pt": "bundled",
    "HICO_test2015_00000001.jpg": "test_000000.png",
    "HICO_test2015_00000002.jpg": "test_000001.png",
    "photo.jpg": HICO + "/images/test2015/test_000002.png",
}
SWAP_WORD = {"openai": "bundled"}  # whole README arguments -> their stand-ins
TEACHER = [
    "teacher.model=eoid-synth-clip",
    "teacher.weights=bundled",
    "teacher.batch_size=64",
    "teacher.num_workers=0",
]
STUDENT = [
    "student.preset=tiny",
    "student.num_queries=8",
    "student.detr_init=",
    "optim.epochs=1",
    "optim.max_iters=2",
    "optim.batch_size=2",
    "optim.num_workers=0",
    "optim.eval_every=1",
    "data.val_images=2",
    "augment.scales=[96]",
    "augment.max_size=128",
    "augment.crop_scales=[96]",
    "augment.crop_min=64",
    "augment.crop_max=96",
    "augment.test_size=96",
]
EVAL = ["augment.test_size=96", "augment.max_size=128", "data.dataset=" + VOCAB]
SWAP_ARGS = {  # command -> arguments added at the end
    ("cache-teacher",): [*TEACHER, "data.dataset=" + VOCAB],
    ("train",): [*TEACHER, *STUDENT, "data.dataset=" + VOCAB],
    ("evaluate",): EVAL,
    ("data", "check"): ["--dataset", VOCAB],
}
WEIGHTS = "the real CLIP or DETR weights, which eoid never downloads"
TABLE6 = (
    "a V-COCO/COCO step of Table 6; tests/e2e/test_hico_vcoco_end_to_end.py runs the same steps on "
    "generated data"
)
ORIGINAL = (
    "the authors' released checkpoints, which eoid never downloads; "
    "tests/pipeline/test_run_import.py imports files built with the original key names and layout"
)
SLURM = "a Slurm job line (srun, SLURM_* variables)"
SKIP = {  # command as the docs write it -> why it is not run here (it is still parsed)
    (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' -c constraints.txt "
        "&& eoid quickstart"
    ): (
        "13 minutes and a new venv; tests/pipeline/test_run_quickstart.py runs a shortened "
        "quickstart and .ci/run the install"
    ),
    "torchrun --nproc_per_node=4 -m eoid train --config configs/hico_ua.toml": "4 processes (the paper's 4 GPUs); tests/e2e/test_resume_and_distributed.py runs 2-process torchrun",
    "torchrun --nproc_per_node=4 -m eoid cache-teacher --config configs/cache_hico_rn50x16.toml": "4 processes; tests/pipeline/test_run_cache.py checks that parts give the bytes of one run",
    (
        "torchrun --nnodes=2 --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=node01:29500 "
        "--rdzv_id=hico_ua -m eoid train --config configs/hico_ua.toml"
    ): "two machines of 4 GPUs",
    (
        "srun torchrun --nnodes=$SLURM_NNODES --nproc_per_node=4 --rdzv_backend=c10d "
        "--rdzv_endpoint=$MASTER:29500 --rdzv_id=$SLURM_JOB_ID -m eoid train --config configs/hico_ua.toml"
    ): SLURM,
    (
        "srun eoid sweep configs/studies/table5_ua_uc.toml --out runs/studies/table5 "
        "--part $SLURM_ARRAY_TASK_ID/8"
    ): SLURM,
    "eoid quickstart --out eoid-quickstart --seed 0": "13 minutes; tests/pipeline/test_run_quickstart.py runs a shortened quickstart",
    (
        "for i in 0 1 2 3 4; do torchrun --nproc_per_node=4 -m eoid train "
        "--config configs/hico_uc$i.toml; done"
    ): "4 GPUs, and UC settings exist only in the HICO-DET vocabulary",
    (
        "torchrun --nproc_per_node=4 -m eoid train --config configs/hico_supervised.toml "
        "--out runs/hico_supervised"
    ): TABLE6,
    (
        "eoid pseudo-label --checkpoint runs/hico_supervised/checkpoint_best.pt --coco "
        "data/v-coco/instances_vcoco_trainval.json --images data/coco/train2014 "
        "--out data/v-coco/vcoco_trainval_pseudo_0.1.json --threshold 0.1"
    ): TABLE6,
    (
        "eoid mix --mapping vcoco-to-hico-det --out data/hico_vcoco --source "
        "data/hico_20160224_det/annotations/trainval_hico.json data/hico_20160224_det/images/train2015 hico-det "
        "--source data/v-coco/vcoco_trainval_pseudo_0.1.json data/coco/train2014 hico-det"
    ): TABLE6,
    "eoid cache-teacher --config configs/cache_hico_vcoco.toml": TABLE6,
    "torchrun --nproc_per_node=4 -m eoid train --config configs/hico_vcoco_pseudo.toml": TABLE6,
    (
        "eoid evaluate-vcoco --checkpoint runs/hico_vcoco_pseudo/checkpoint.pt --mapping vcoco-to-hico-det "
        "--annotations data/v-coco/annotations/test_vcoco.json --images data/coco/val2014 "
        "--out runs/hico_vcoco_pseudo/vcoco_eval"
    ): TABLE6,
    (
        "eoid evaluate-vcoco --checkpoint runs/vcoco/checkpoint.pt --annotations "
        "data/v-coco/annotations/test_vcoco.json --images data/coco/val2014 --out runs/vcoco/vcoco_eval"
    ): (
        "V-COCO test data and a V-COCO student; tests/pipeline/evaluation/test_vcoco_own_vocabulary.py "
        "scores V-COCO students with this command"
    ),
    "eoid sweep configs/studies/table5_ua_uc.toml --out runs/studies/table5 --caches-only": "a HICO-DET study: its UC settings exist only in the HICO-DET vocabulary, and its cache needs "
    + WEIGHTS
    + "; the synthetic study above runs the same sweep code",
    "eoid sweep configs/studies/table5_ua_uc.toml --out runs/studies/table5 --part $SLURM_ARRAY_TASK_ID/8": "a cluster job-array line (SLURM_ARRAY_TASK_ID)",
    "eoid sweep configs/studies/table5_ua_uc.toml --out runs/studies/table5 --collect-only": "collects the table5 runs, which are not run here (see --caches-only)",
    "eoid sweep configs/studies/synth_tiny.toml --out runs/synth_tiny": "a minute or more; tests/pipeline/test_run_sweep.py runs this study end to end",
    (
        "eoid cache relabel teacher_cache/hico_rn50x16 --templates configs/prompts/hoi_templates.txt "
        "--descriptions hico_descriptions.json --out teacher_cache/hico_rn50x16_described"
    ): (
        "eoid ships no descriptions of HICO-DET's 600 HOIs; tests/pipeline/test_run_cache_ensembles.py and "
        "tests/e2e/test_cache_ensembles_cli.py run --descriptions and --templates on small vocabularies"
    ),
    "eoid sweep configs/studies/teachers.toml --out runs/studies/teachers": "a HICO-DET study whose caches need "
    + WEIGHTS
    + "; its cache-teacher, merge, relabel and train "
    "commands run above, and tests/pipeline/test_run_sweep.py makes a study's merge and relabel",
    "eoid import-checkpoint ckpt/EoID.pth --from eoid-official --check": ORIGINAL,
    "eoid import-checkpoint ckpt/EoID.pth --from eoid-official --out ckpt/eoid_ua.pt": ORIGINAL,
    "eoid evaluate --config configs/eval_hico.toml --checkpoint ckpt/eoid_ua.pt --setting ua --out eval_eoid": ORIGINAL,
    "eoid import-checkpoint pretrained/hico_cdn_s.pth --from cdn-official --out ckpt/cdn_s.pt --preset cdn-s": ORIGINAL,
    (
        "eoid evaluate --checkpoint runs/hico_supervised/checkpoint_best.pt --annotations "
        "data/hico_20160224_det/annotations/test_hico.json --images data/hico_20160224_det/images/test2015 "
        "--verb-classifier clip --clip RN50x16-quickgelu --clip-weights /path/to/RN50x16.pt --prior "
        "--out runs/table2_prior"
    ): "CLIP RN50x16 as verb classifier needs "
    + WEIGHTS
    + "; tests/pipeline/test_run_evaluate_clip.py "
    "runs --verb-classifier clip with the shipped teacher",
    (
        "eoid evaluate --checkpoint runs/hico_ua/checkpoint_best.pt --config configs/eval_hico.toml --setting ua "
        "--verb-classifier blend --blend-weight 0.5 --clip RN50x16-quickgelu --clip-weights /path/to/RN50x16.pt "
        "--out runs/hico_ua/test_blend"
    ): "CLIP RN50x16 at inference needs "
    + WEIGHTS
    + "; tests/pipeline/test_run_evaluate_clip.py and "
    "tests/e2e/test_cli_pipeline.py run --verb-classifier blend with the shipped teacher",
    "python -c \"import open_clip; open_clip.create_model('RN50x16-quickgelu', pretrained='openai')\"": "downloads "
    + WEIGHTS,
}


# ----------------------------------------------------------------------------- reading
# the README


def code_blocks(text: str) -> list[str]:
    """The bodies of the fenced code blocks (indented fences too), continuation lines
    joined.

    A block fenced as ```text is a picture or a printout (a data-flow diagram), not
    commands.
    """
    blocks = re.findall(r"^[ \t]*```([\w-]*)\n(.*?)^[ \t]*```", text, flags=re.S | re.M)
    return [re.sub(r"\\\n\s*", " ", b) for kind, b in blocks if kind != "text"]


def _segments(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at ; && || | &), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # prose in a code block (a folder listing), not a shell line
        return []
    segments, current = [], []
    for token in tokens:
        if token in (";", "&&", "||", "|", "&"):
            segments.append(current)
            current = []
        else:
            current.append(token)
    return [s[1:] if s[:1] == ["do"] else s for s in segments + [current] if s]


def readme_commands(text: str) -> list[tuple[str, list[str]]]:
    """(the line as written, the eoid arguments) for every eoid command of the code
    blocks, in order.

    The line as written keys SKIP: a whole line when it holds anything but eoid commands
    (the install line, a torchrun loop), else the one command.
    """
    found = []
    for block in code_blocks(text):
        for line in block.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            uses_eoid = [s for s in _segments(line) if _eoid_args(s) is not None]
            if line.startswith("python -c") and ("eoid" in line or "open_clip" in line):
                found.append((line, []))
            elif uses_eoid and len(uses_eoid) < len(_segments(line)):
                found.append(
                    (" ".join(line.split("#")[0].split()), _eoid_args(uses_eoid[0]))
                )
            else:
                found += [
                    (shlex.join(s).replace("'", ""), _eoid_args(s)) for s in uses_eoid
                ]
    return found


def _eoid_args(tokens: list[str]) -> list[str] | None:
    """The arguments after `eoid` (or `torchrun ... -m eoid`), or None if not an eoid
    command.
    """
    if tokens[:1] == ["srun"]:  # a Slurm job line: what srun starts
        return _eoid_args(tokens[1:])
    if tokens[:1] == ["eoid"]:
        return tokens[1:]
    if (
        tokens[:1] == ["torchrun"]
        and "-m" in tokens
        and tokens[tokens.index("-m") + 1] == "eoid"
    ):
        return tokens[tokens.index("-m") + 2 :]
    return None


def swap(arg: str) -> str:
    """One README argument with the generated world's stand-ins."""
    arg = SWAP_WORD.get(arg, arg)
    for old, new in SWAP_TEXT.items():
        arg = arg.replace(old, new)
    return arg


def resolve(args: list[str]) -> tuple[tuple[str, ...], click.Command, list[str]]:
    """(command path, e.g. ("cache", "inspect"), the click command, its own arguments)."""
    command, names = main, []
    while isinstance(command, click.Group) and args and args[0] in command.commands:
        names.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    return tuple(names), command, args


def parses(args: list[str]) -> None:
    """Parse `eoid ARGS` as click would, without running it (unknown options raise
    UsageError).
    """
    names, command, rest = resolve(args)
    assert names, f"eoid {' '.join(args)}: not an eoid command"
    with command.make_context(" ".join(["eoid", *names]), list(rest)):
        pass


def table_synopses(text: str) -> list[str]:
    """`eoid ...` snippets in the README's tables, e.g. `eoid cache inspect CACHE [--out
    DIR]`.
    """
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [m for row in rows for m in re.findall(r"`(eoid [^`]+)`", row)]


def page_commands() -> list[tuple[str, list[str]]]:
    """(line, eoid arguments) of every page, in PAGES order."""
    return [c for page in PAGES for c in readme_commands(page.read_text())]


TEXT = "\n".join(page.read_text() for page in PAGES)
COMMANDS = page_commands()


# ----------------------------------------------------------------------------- the
# tests


def test_every_page_of_docs_is_in_the_order_the_commands_run():
    pages = set((ROOT / "docs").glob("*.md"))
    assert pages <= set(PAGES), (
        f"add to PAGES: {sorted(p.name for p in pages - set(PAGES))}"
    )
    assert all(page.is_file() for page in PAGES), [
        p.name for p in PAGES if not p.is_file()
    ]


def test_every_docs_command_parses_with_the_options_it_shows():
    for line, args in COMMANDS:
        if args:
            parses([swap(a) for a in args])


def test_every_option_in_the_docs_tables_exists():
    for synopsis in table_synopses(TEXT):
        names, command, _ = resolve(synopsis.split()[1:])
        assert names, synopsis
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", synopsis):
            assert option in known, (
                f"docs table: `{synopsis}`: eoid {' '.join(names)} has no {option}"
            )


def test_the_skip_table_lists_only_commands_the_docs_still_have():
    assert set(SKIP) <= {line for line, _ in COMMANDS}, set(SKIP) - {
        line for line, _ in COMMANDS
    }


def _lay_out_docs_folder(root: Path) -> None:
    """configs/ and the HICO-DET paths of the README, filled with a generated world."""
    from eoid.pipeline.synth.world import generate_world

    world = generate_world(root / "world", 16, seed=5, progress=False)
    shutil.copytree(ROOT / "configs", root / "configs")
    (root / "eoid" / "data").mkdir(parents=True)
    shutil.copy(ROOT / "eoid" / "data" / "quickstart.toml", root / "eoid" / "data")
    (root / HICO / "annotations").mkdir(parents=True)
    (root / HICO / "images").mkdir()
    shutil.copy(world.train_json, root / HICO / "annotations" / "trainval_hico.json")
    shutil.copy(world.test_json, root / HICO / "annotations" / "test_hico.json")
    for split in ("train2015", "test2015"):
        (root / HICO / "images" / split).symlink_to(world.image_dir.resolve())


@pytest.mark.slow
def test_every_docs_command_runs_as_written_on_a_generated_world(tmp_path, monkeypatch):
    _lay_out_docs_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    runner, ran = CliRunner(), []
    for line, args in COMMANDS:
        if line in SKIP:
            continue
        if not args:  # a `python -c` line of the README
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            done = subprocess.run(
                [sys.executable, *shlex.split(line)[1:]],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"docs: {line}\n{done.stderr[-3000:]}"
            ran.append(line)
            continue
        args = [swap(a) for a in args]
        names, command, _ = resolve(args)
        extra = SWAP_ARGS.get(names, [])
        if extra and extra[0] != "--dataset":
            extra = [x for s in extra for x in ("--set", s)]
        result = runner.invoke(main, args + extra)
        assert result.exit_code == 0, (
            f"docs: {line}\nran: eoid {shlex.join(args + extra)}\n{result.output}"
        )
        ran.append(line)
    assert ran, "no README command ran"
    unlisted = [line for line, _ in COMMANDS if line not in SKIP and line not in ran]
    assert not unlisted, unlisted
