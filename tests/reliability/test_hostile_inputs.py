"""Every eoid command against every class of bad input, from one table.

A row is (command, argument, input class): the command as a user types it, with one bad
input. Each row must end with exit status 1 and exactly one `Error:` line that names the
offending path or key, no traceback, and every file that existed before (the inputs, a
user's folder) byte for byte as it was, with nothing added to a user's folder. A new
command enters by new rows here.

The commands run in this process through click's CliRunner (a few seconds for the whole
table). Classes tested elsewhere, with real processes, and not repeated here:
- full disk: test_disk_full.py (train, cache-teacher, relabel, checkpoints)
- interrupted (kill, Ctrl-C, SIGTERM): test_train_kill.py, test_signals.py
- concurrent writers: test_locks.py
- unwritable by mode bits (as a non-root user): test_output_folders.py (slow)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from click.testing import CliRunner

from eoid.cli import main

from tiny_train import TINY, TINY_CLIP

SETS = [a for s in TINY for a in ("--set", s)]


class _RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint does (the marker
    proves it ran).
    """

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@dataclass
class Inputs:
    """Good inputs (a world, a finished run and cache) and one file of every bad class."""

    synth: Path
    run: Path
    cache: Path
    weights: Path
    bad: Path  # folder of the bad inputs (hashed before and after every row)
    pwned: Path  # created if a hostile pickle ever runs

    @property
    def ann(self) -> str:
        return str(self.synth / "train.json")

    @property
    def images(self) -> str:
        return str(self.synth / "images")

    @property
    def vocab(self) -> str:
        return str(self.synth / "vocabulary.json")

    @property
    def ckpt(self) -> str:
        return str(self.run / "checkpoint.pt")

    def file(self, name: str) -> str:
        return str(self.bad / name)

    def user_folder(self, name: str) -> str:
        """A folder of the user's own files, named like what eoid writes (they must
        survive).
        """
        folder = self.bad / name
        if not folder.exists():
            (folder / "images").mkdir(parents=True)
            (folder / "train.json").write_text('["my own annotations"]')
            shutil.copy(
                next((self.synth / "images").glob("*.png")),
                folder / "images" / "train_000000.png",
            )
        return str(folder)


def _records(synth: Path) -> list[dict]:
    return json.loads((synth / "train.json").read_text())


def _write_bad_inputs(c: Inputs) -> None:
    b = c.bad
    records = _records(c.synth)
    (b / "empty.json").write_text("")
    (b / "empty_list.json").write_text("[]")
    good = (c.synth / "train.json").read_text()
    (b / "truncated.json").write_text(good[: len(good) // 2])
    (b / "object.json").write_text('{"file_name": "x.png"}')
    bool_box = json.loads(json.dumps(records))
    # JSON true is an int in Python
    bool_box[0]["annotations"][0]["bbox"][0] = True
    (b / "bool_box.json").write_text(json.dumps(bool_box))
    (b / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    long_name = json.loads(json.dumps(records))
    # past NAME_MAX (255) of every file system
    long_name[0]["file_name"] = "x" * 300 + ".png"
    (b / "long_name.json").write_text(json.dumps(long_name))
    (b / "latin1.toml").write_bytes(
        "[optim]\n# caf\xe9\nepochs = 1\n".encode("latin-1")
    )
    (b / "hostile.pt").parent.mkdir(exist_ok=True)
    torch.save({"model": _RunsCode(c.pwned)}, b / "hostile.pt")
    ckpt = (c.run / "checkpoint.pt").read_bytes()
    (b / "truncated.pt").write_bytes(ckpt[: len(ckpt) // 2])
    (b / "existing.pt").write_bytes(b"the user's own file")
    (b / "existing.onnx").write_bytes(b"the user's own file")
    (b / "existing.h5").write_bytes(b"the user's own file")
    (b / "existing.json").write_text('{"mine": true}')
    (b / "existing.png").write_bytes(b"the user's own picture")
    (b / "blocker").write_text("a file where a folder is expected")
    os.symlink(b / "loop", b / "loop")
    from PIL import Image

    (b / "thin").mkdir()
    # 0 px wide at test size 112/160
    Image.new("RGB", (1, 1000), "white").save(b / "thin" / "thin.png")
    long_template = "a photo of " + "a very " * 40 + "{verb_ing} {object}"
    (b / "past_context.txt").write_text(long_template + "\n")
    (b / "too_long.txt").write_text("{verb_ing} {object} " + "and so on " * 60 + "\n")
    (b / "study_latin1.toml").write_bytes('base = "caf\xe9.toml"\n'.encode("latin-1"))
    (b / "empty_run").mkdir()
    (b / "empty_run" / "metrics.jsonl").write_text("")


def _onnx_files(c: Inputs) -> None:
    """An exported tiny student, then two damaged copies: metadata that is not JSON, a
    fixed size.
    """
    import onnx

    from eoid.pipeline.run_export import run_export

    good = c.bad / "model.onnx"
    run_export(Path(c.ckpt), good, 17)
    proto = onnx.load(str(good))
    for entry in proto.metadata_props:
        if entry.key == "eoid.vocabulary":
            entry.value = "{not json"
    onnx.save(proto, str(c.bad / "bad_meta.onnx"))
    proto = onnx.load(str(good))
    for dim, size in zip(
        proto.graph.input[0].type.tensor_type.shape.dim, (1, 3, 128, 128)
    ):
        dim.ClearField("dim_param")
        dim.dim_value = size
    onnx.save(proto, str(c.bad / "fixed.onnx"))


@pytest.fixture(scope="module")
def inputs(synth, trained_run, cache, clip_weights, tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("hostile")
    c = Inputs(synth, trained_run, cache, clip_weights, root / "bad", root / "pwned")
    c.bad.mkdir()
    _write_bad_inputs(c)
    _onnx_files(c)
    return c


@dataclass(frozen=True)
class Row:
    command: str  # as the user types it
    argument: str  # the flag or argument holding the bad input
    kind: str  # the input class
    args: Callable[[Inputs], list[str]]
    # what the Error line must name (a path, key or value)
    names: Callable[[Inputs], list[str]]
    # the command's answer is a report of every problem (data check), not one line
    report: bool = False

    @property
    def id(self) -> str:
        return f"{self.command} {self.argument}: {self.kind}"


def _train(
    c: Inputs, *extra: str, ann: str | None = None, out: str | None = None
) -> list[str]:
    return [
        "train",
        "--annotations",
        ann or c.ann,
        "--images",
        c.images,
        "--out",
        out or str(c.bad.parent / "runs" / "train"),
        *SETS,
        "--set",
        f"data.dataset={c.vocab}",
        "--set",
        "optim.epochs=1",
        *extra,
    ]


def _cache_teacher(
    c: Inputs,
    *,
    ann: str | None = None,
    weights: str | None = None,
    out: str | None = None,
) -> list[str]:
    return [
        "cache-teacher",
        "--annotations",
        ann or c.ann,
        "--images",
        c.images,
        "--dataset",
        c.vocab,
        "--clip",
        str(TINY_CLIP),
        "--clip-weights",
        weights or str(c.weights),
        "--out",
        out or str(c.bad.parent / "runs" / "cache"),
        "--set",
        "teacher.num_workers=0",
    ]


def _predict(
    c: Inputs, *images: str, model: list[str] | None = None, out: str | None = None
) -> list[str]:
    return [
        "predict",
        *(images or [str(next((c.synth / "images").glob("*.png")))]),
        *(model or ["--checkpoint", c.ckpt]),
        "--out",
        out or str(c.bad.parent / "runs" / "predict"),
    ]


def _evaluate(c: Inputs, ckpt: str | None = None, out: str | None = None) -> list[str]:
    return [
        "evaluate",
        "--checkpoint",
        ckpt or c.ckpt,
        "--annotations",
        str(c.synth / "test.json"),
        "--images",
        c.images,
        "--out",
        out or str(c.bad.parent / "runs" / "eval"),
    ]


def _relabel(c: Inputs, *extra: str, out: str | None = None) -> list[str]:
    return [
        "cache",
        "relabel",
        str(c.cache),
        *extra,
        "--out",
        out or str(c.bad.parent / "runs" / "relabel"),
    ]


def _row(
    command: str,
    argument: str,
    kind: str,
    args: Callable[[Inputs], list[str]],
    names: Callable[[Inputs], list[str]],
    report: bool = False,
) -> Row:
    return Row(command, argument, kind, args, names, report)


ROWS = [
    # ------------------------------------------------------------------ train
    _row(
        "train",
        "--annotations",
        "missing",
        lambda c: _train(c, ann=c.file("nope.json")),
        lambda c: [c.file("nope.json")],
    ),
    _row(
        "train",
        "--annotations",
        "empty",
        lambda c: _train(c, ann=c.file("empty.json")),
        lambda c: [c.file("empty.json")],
    ),
    _row(
        "train",
        "--annotations",
        "truncated",
        lambda c: _train(c, ann=c.file("truncated.json")),
        lambda c: [c.file("truncated.json")],
    ),
    _row(
        "train",
        "--annotations",
        "wrong type",
        lambda c: _train(c, ann=c.file("object.json")),
        lambda c: [c.file("object.json")],
    ),
    _row(
        "train",
        "--annotations",
        "wrong type (true as a box coordinate)",
        lambda c: _train(c, ann=c.file("bool_box.json")),
        lambda c: [c.file("bool_box.json"), "record 0"],
    ),
    _row(
        "train",
        "--annotations",
        "nested too deeply",
        lambda c: _train(c, ann=c.file("deep.json")),
        lambda c: [c.file("deep.json")],
    ),
    _row(
        "train",
        "--annotations",
        "file_name too long",
        lambda c: _train(c, ann=c.file("long_name.json")),
        lambda c: [c.file("long_name.json"), "record 0"],
    ),
    _row(
        "train",
        "--config",
        "not UTF-8",
        lambda c: [*_train(c), "--config", c.file("latin1.toml")],
        lambda c: [c.file("latin1.toml")],
    ),
    _row(
        "train",
        "--set",
        "out of range",
        lambda c: _train(c, "--set", "optim.lr=-1"),
        lambda c: ["optim.lr"],
    ),
    _row(
        "train",
        "--cache",
        "missing",
        lambda c: _train(c, "--cache", c.file("no_cache"), "--set", "loss.distill=1"),
        lambda c: [c.file("no_cache")],
    ),
    _row(
        "train",
        "--out",
        "holds the user's files",
        lambda c: _train(c, out=c.user_folder("user_train")),
        lambda c: [c.file("user_train")],
    ),
    _row(
        "train",
        "--out",
        "unwritable",
        lambda c: _train(c, out=c.file("blocker/out")),
        lambda c: [c.file("blocker")],
    ),
    _row(
        "train",
        "--out",
        "symlink loop",
        lambda c: _train(c, out=c.file("loop/out")),
        lambda c: [c.file("loop")],
    ),
    _row(
        "train",
        "--out",
        "the image folder it reads",
        lambda c: _train(c, out=c.images),
        lambda c: [c.images],
    ),
    # ------------------------------------------------------------------ cache-teacher
    _row(
        "cache-teacher",
        "--annotations",
        "empty list",
        lambda c: _cache_teacher(c, ann=c.file("empty_list.json")),
        lambda c: [c.file("empty_list.json")],
    ),
    _row(
        "cache-teacher",
        "--annotations",
        "truncated",
        lambda c: _cache_teacher(c, ann=c.file("truncated.json")),
        lambda c: [c.file("truncated.json")],
    ),
    _row(
        "cache-teacher",
        "--clip-weights",
        "hostile pickle",
        lambda c: _cache_teacher(c, weights=c.file("hostile.pt")),
        lambda c: [c.file("hostile.pt")],
    ),
    _row(
        "cache-teacher",
        "--out",
        "holds the user's files",
        lambda c: _cache_teacher(c, out=c.user_folder("user_cache")),
        lambda c: [c.file("user_cache")],
    ),
    _row(
        "cache-teacher",
        "--out",
        "symlink loop",
        lambda c: _cache_teacher(c, out=c.file("loop/c")),
        lambda c: [c.file("loop")],
    ),
    # ------------------------------------------------------------------ evaluate
    _row(
        "evaluate",
        "--checkpoint",
        "hostile pickle",
        lambda c: _evaluate(c, c.file("hostile.pt")),
        lambda c: [c.file("hostile.pt")],
    ),
    _row(
        "evaluate",
        "--checkpoint",
        "truncated",
        lambda c: _evaluate(c, c.file("truncated.pt")),
        lambda c: [c.file("truncated.pt")],
    ),
    _row(
        "evaluate",
        "--out",
        "holds the user's files",
        lambda c: _evaluate(c, out=c.user_folder("user_eval")),
        lambda c: [c.file("user_eval")],
    ),
    # ------------------------------------------------------------------ predict
    _row(
        "predict",
        "--checkpoint",
        "missing",
        lambda c: _predict(c, model=["--checkpoint", c.file("no.pt")]),
        lambda c: [c.file("no.pt")],
    ),
    _row(
        "predict",
        "IMAGES",
        "1 pixel wide",
        lambda c: _predict(c, c.file("thin")),
        lambda c: [c.file("thin/thin.png")],
    ),
    _row(
        "predict",
        "IMAGES",
        "1 pixel wide (--onnx)",
        lambda c: _predict(c, c.file("thin"), model=["--onnx", c.file("model.onnx")]),
        lambda c: [c.file("thin/thin.png")],
    ),
    _row(
        "predict",
        "--onnx",
        "metadata not JSON",
        lambda c: _predict(c, model=["--onnx", c.file("bad_meta.onnx")]),
        lambda c: [c.file("bad_meta.onnx")],
    ),
    _row(
        "predict",
        "--onnx",
        "fixed input size",
        lambda c: _predict(c, model=["--onnx", c.file("fixed.onnx")]),
        lambda c: [c.file("fixed.onnx")],
    ),
    _row(
        "predict",
        "--out",
        "the image folder it reads",
        lambda c: _predict(c, c.images, out=c.images),
        lambda c: [c.images],
    ),
    _row(
        "predict",
        "--out",
        "holds the user's files",
        lambda c: _predict(c, out=c.user_folder("user_predict")),
        lambda c: [c.file("user_predict")],
    ),
    # ------------------------------------------------------------------
    # import-checkpoint, export
    _row(
        "import-checkpoint",
        "FILE",
        "hostile pickle",
        lambda c: [
            "import-checkpoint",
            c.file("hostile.pt"),
            "--from",
            "eoid-official",
            "--out",
            str(c.bad.parent / "runs" / "imported.pt"),
        ],
        lambda c: [c.file("hostile.pt")],
    ),
    _row(
        "import-checkpoint",
        "FILE",
        "truncated",
        lambda c: [
            "import-checkpoint",
            c.file("truncated.pt"),
            "--from",
            "eoid-official",
            "--out",
            str(c.bad.parent / "runs" / "imported.pt"),
        ],
        lambda c: [c.file("truncated.pt")],
    ),
    _row(
        "import-checkpoint",
        "--out",
        "an existing file",
        lambda c: [
            "import-checkpoint",
            c.ckpt,
            "--from",
            "eoid-official",
            "--out",
            c.file("existing.pt"),
        ],
        lambda c: [c.file("existing.pt")],
    ),
    _row(
        "export",
        "--checkpoint",
        "hostile pickle",
        lambda c: [
            "export",
            "--checkpoint",
            c.file("hostile.pt"),
            "--out",
            str(c.bad.parent / "m.onnx"),
        ],
        lambda c: [c.file("hostile.pt")],
    ),
    _row(
        "export",
        "--out",
        "an existing file",
        lambda c: ["export", "--checkpoint", c.ckpt, "--out", c.file("existing.onnx")],
        lambda c: [c.file("existing.onnx")],
    ),
    # ------------------------------------------------------------------ report, sweep
    _row(
        "report",
        "RUN",
        "missing",
        lambda c: ["report", c.file("no_run")],
        lambda c: [c.file("no_run")],
    ),
    _row(
        "report",
        "RUN",
        "empty metrics",
        lambda c: ["report", c.file("empty_run")],
        lambda c: [c.file("empty_run")],
    ),
    _row(
        "report",
        "RUN",
        "a folder of the user's",
        lambda c: ["report", c.user_folder("user_report")],
        lambda c: [c.file("user_report")],
    ),
    _row(
        "sweep",
        "STUDY",
        "not UTF-8",
        lambda c: [
            "sweep",
            c.file("study_latin1.toml"),
            "--out",
            str(c.bad.parent / "runs" / "study"),
        ],
        lambda c: [c.file("study_latin1.toml")],
    ),
    # ------------------------------------------------------------------ pseudo-label,
    # mix, evaluate-vcoco
    _row(
        "pseudo-label",
        "--coco",
        "truncated",
        lambda c: [
            "pseudo-label",
            "--checkpoint",
            c.ckpt,
            "--coco",
            c.file("truncated.json"),
            "--images",
            c.images,
            "--out",
            str(c.bad.parent / "runs" / "pseudo.json"),
        ],
        lambda c: [c.file("truncated.json")],
    ),
    _row(
        "pseudo-label",
        "--out",
        "an existing file",
        lambda c: [
            "pseudo-label",
            "--checkpoint",
            c.ckpt,
            "--coco",
            c.ann,
            "--images",
            c.images,
            "--out",
            c.file("existing.json"),
        ],
        lambda c: [c.file("existing.json")],
    ),
    _row(
        "mix",
        "--source",
        "missing",
        lambda c: [
            "mix",
            "--source",
            c.file("nope.json"),
            c.images,
            c.vocab,
            "--out",
            str(c.bad.parent / "runs" / "mix"),
        ],
        lambda c: [c.file("nope.json")],
    ),
    _row(
        "mix",
        "--out",
        "holds the user's files",
        lambda c: [
            "mix",
            "--source",
            c.ann,
            c.images,
            c.vocab,
            "--out",
            c.user_folder("user_mix"),
        ],
        lambda c: [c.file("user_mix")],
    ),
    _row(
        "evaluate-vcoco",
        "--checkpoint",
        "hostile pickle",
        lambda c: [
            "evaluate-vcoco",
            "--checkpoint",
            c.file("hostile.pt"),
            "--annotations",
            c.ann,
            "--images",
            c.images,
            "--out",
            str(c.bad.parent / "runs" / "vcoco"),
        ],
        lambda c: [c.file("hostile.pt")],
    ),
    # ------------------------------------------------------------------ data, synth,
    # quickstart
    _row(
        "data check",
        "ANNOTATIONS",
        "empty list",
        lambda c: [
            "data",
            "check",
            c.file("empty_list.json"),
            "--images",
            c.images,
            "--dataset",
            c.vocab,
        ],
        lambda c: [c.file("empty_list.json")],
        report=True,
    ),
    _row(
        "data check",
        "ANNOTATIONS",
        "nested too deeply",
        lambda c: [
            "data",
            "check",
            c.file("deep.json"),
            "--images",
            c.images,
            "--dataset",
            c.vocab,
        ],
        lambda c: [c.file("deep.json")],
        report=True,
    ),
    _row(
        "synth",
        "--out",
        "holds the user's files",
        lambda c: ["synth", "--out", c.user_folder("user_synth"), "--images", "4"],
        lambda c: [c.file("user_synth")],
    ),
    _row(
        "synth",
        "--images",
        "out of range",
        lambda c: ["synth", "--out", str(c.bad.parent / "w"), "--images", "0"],
        lambda c: ["num_images"],
    ),
    _row(
        "synth-teacher",
        "--out",
        "an existing file",
        lambda c: ["synth-teacher", "--out", c.file("existing.pt"), "--steps", "1"],
        lambda c: [c.file("existing.pt")],
    ),
    _row(
        "quickstart",
        "--set",
        "a key the quickstart sets itself",
        lambda c: [
            "quickstart",
            "--out",
            str(c.bad.parent / "qs"),
            "--set",
            "out=elsewhere",
        ],
        lambda c: ["out"],
    ),
    _row(
        "quickstart",
        "--out",
        "holds the user's files",
        lambda c: ["quickstart", "--out", c.user_folder("user_quickstart")],
        lambda c: [c.file("user_quickstart")],
    ),
    # ------------------------------------------------------------------ cache tools
    _row(
        "cache inspect",
        "CACHE",
        "missing",
        lambda c: ["cache", "inspect", c.file("no_cache")],
        lambda c: [c.file("no_cache")],
    ),
    _row(
        "cache inspect",
        "--png",
        "an existing file",
        lambda c: [
            "cache",
            "inspect",
            str(c.cache),
            "--png",
            c.file("existing.png"),
            "--samples",
            "2",
        ],
        lambda c: [c.file("existing.png")],
    ),
    _row(
        "cache verify",
        "--annotations",
        "truncated",
        lambda c: [
            "cache",
            "verify",
            str(c.cache),
            "--annotations",
            c.file("truncated.json"),
        ],
        lambda c: [c.file("truncated.json")],
    ),
    _row(
        "cache relabel",
        "--templates",
        "placeholders past the context",
        lambda c: _relabel(c, "--templates", c.file("past_context.txt")),
        lambda c: [c.file("past_context.txt"), "tokens"],
    ),
    _row(
        "cache relabel",
        "--templates",
        "longer than the context",
        lambda c: _relabel(c, "--templates", c.file("too_long.txt")),
        lambda c: [c.file("too_long.txt"), "tokens"],
    ),
    _row(
        "cache relabel",
        "--gamma",
        "out of range",
        lambda c: _relabel(c, "--gamma", "-3"),
        lambda c: ["gamma"],
    ),
    _row(
        "cache relabel",
        "--out",
        "holds the user's files",
        lambda c: _relabel(c, "--gamma", "50", out=c.user_folder("user_relabel")),
        lambda c: [c.file("user_relabel")],
    ),
    _row(
        "cache merge",
        "--weights",
        "out of range",
        lambda c: [
            "cache",
            "merge",
            str(c.cache),
            str(c.cache),
            "--weights",
            "1,-1",
            "--out",
            str(c.bad.parent / "runs" / "merged"),
        ],
        lambda c: ["--weights"],
    ),
    _row(
        "cache merge",
        "--out",
        "holds the user's files",
        lambda c: [
            "cache",
            "merge",
            str(c.cache),
            str(c.cache),
            "--out",
            c.user_folder("user_merge"),
        ],
        lambda c: [c.file("user_merge")],
    ),
    _row(
        "cache export",
        "CACHE",
        "missing",
        lambda c: [
            "cache",
            "export",
            c.file("no_cache"),
            "--out",
            str(c.bad.parent / "c.h5"),
        ],
        lambda c: [c.file("no_cache")],
    ),
    _row(
        "cache export",
        "--out",
        "an existing file",
        lambda c: ["cache", "export", str(c.cache), "--out", c.file("existing.h5")],
        lambda c: [c.file("existing.h5")],
    ),
]


def _snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots` (symlinks by their target text): what must not
    change.
    """
    found = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in filenames + [
                d for d in dirnames if os.path.islink(os.path.join(dirpath, d))
            ]:
                path = Path(dirpath) / name
                data = (
                    os.readlink(path).encode()
                    if path.is_symlink()
                    else path.read_bytes()
                )
                found[str(path)] = hashlib.sha256(data).hexdigest()
    return found


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_one_error_line_naming_it_and_changes_nothing(inputs, row):
    args = row.args(inputs)
    before = _snapshot(inputs.bad, inputs.synth, inputs.run, inputs.cache)
    result = CliRunner().invoke(main, args)
    output = result.output
    crashed = result.exception if not isinstance(result.exception, SystemExit) else None
    # not an EoidError: a traceback
    assert crashed is None, f"{type(crashed).__name__}: {crashed}"
    assert result.exit_code == 1, f"exit {result.exit_code}: {output[-2000:]}"
    assert "Traceback" not in output
    if row.report:
        answer = output
    else:
        # a progress bar's cursor moves
        plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", output)
        errors = [
            line.strip()
            for line in re.split(r"[\r\n]", plain)
            if line.strip().startswith("Error:")
        ]
        assert len(errors) == 1, output[-2000:]
        answer = errors[0]
    for name in row.names(inputs):
        assert name in answer, f"{name!r} not named in: {answer}"
    assert "weights_only=False" not in answer
    assert _snapshot(inputs.bad, inputs.synth, inputs.run, inputs.cache) == before
    assert not inputs.pwned.exists(), "a hostile pickle ran its code"


def test_every_command_has_a_row():
    """A command added to the CLI without a row here fails this test."""

    def commands(group, prefix=""):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from commands(cmd, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}"

    assert set(commands(main)) - {r.command for r in ROWS} == set()


def test_the_classes_tested_elsewhere_still_have_their_tests():
    here = Path(__file__).parent
    for module, test in [
        ("test_disk_full.py", "def test_"),
        ("test_signals.py", "def test_"),
        ("test_train_kill.py", "def test_"),
        ("test_locks.py", "def test_"),
    ]:
        assert test in (here / module).read_text(), module
