"""What every `eoid` command shares: error display, stop display, the world, --config
and --set.
"""

from __future__ import annotations

import contextlib
import functools
import signal
from pathlib import Path

import click

from eoid.config_loading import load_config
from eoid.errors import EoidError, Interrupted, StoppedAtOnce
from eoid.terminal import stop_exit_code

PATH = click.Path(path_type=Path)


# click >= 8.2 raises this (a UsageError) for a group called without a command; 8.1
# prints the help
_HELP_ASKED = getattr(click.exceptions, "NoArgsIsHelpError", ())


@contextlib.contextmanager
def _one_line_usage(ctx: click.Context):
    """A usage error as one line naming the command's --help, exit 1 (click: usage +
    hint, exit 2).
    """
    try:
        yield
    except _HELP_ASKED:
        # `eoid` or `eoid cache` alone: the help, as asked
        raise
    except click.UsageError as err:
        where = (err.ctx or ctx).command_path
        raise click.ClickException(
            f"{err.format_message()} (see `{where} --help`)"
        ) from None


class _OneLineUsage:
    """Mixin: a mistyped option of this command or group is one line and exit 1."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _one_line_usage(ctx):
            return super().parse_args(ctx, args)


class EoidCommand(_OneLineUsage, click.Command):
    """A command whose mistyped options are one line and exit 1, like every user
    mistake.
    """


class EoidGroup(_OneLineUsage, click.Group):
    """The `eoid` groups: a mistyped command line (unknown command or option, invalid
    choice, missing argument) is the error and where to read more on one line, exit
    1: eoid keeps one rule for every user mistake, where click would print usage and
    a hint and exit 2."""

    command_class = EoidCommand

    def invoke(self, ctx: click.Context):
        with _one_line_usage(ctx):
            return super().invoke(ctx)


EoidGroup.group_class = EoidGroup


def user_errors(command):
    """Show an EoidError as one line and a non-zero exit; other errors keep their
    traceback.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EoidError as err:
            raise click.ClickException(str(err)) from None

    return wrapper


@contextlib.contextmanager
def _sigterm_stops_at_once():
    """SIGTERM outside a StopFlag (before the work began, or while a stopped job
    cleans up) raises StoppedAtOnce, as SIGINT raises KeyboardInterrupt: the command
    exits 143, never a raw death."""

    def stop(signum, frame):
        raise StoppedAtOnce("SIGTERM")

    try:
        old = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: signals stay with their owner
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _ignore_stop_signals() -> None:
    """The exit code is decided: a further Ctrl-C or SIGTERM while the process ends
    changes nothing.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(sig, signal.SIG_IGN)


def saved_on_stop(
    resume: str | None = None, at_once: str = "Run the same command again to resume."
):
    """Show a graceful stop (SIGINT/SIGTERM, progress saved) as a saved run, not as an
    error.

    Exits 128 + the signal's number (130 SIGINT, 143 SIGTERM), also for a second signal
    that stops at once (StoppedAtOnce) and a Ctrl-C before the work began, never a raw
    signal death. `resume` replaces the runner's hint where this command resumes
    differently; `at_once` is the hint after a stop at once.
    """

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                with _sigterm_stops_at_once():
                    return command(*args, **kwargs)
            except Interrupted as stop:
                _ignore_stop_signals()
                click.echo(f"{stop.what}.\n{resume or stop.resume}", err=True)
                raise SystemExit(stop_exit_code(stop)) from None
            # a second signal, or Ctrl-C before the work began
            except KeyboardInterrupt as stop:
                _ignore_stop_signals()
                name = getattr(stop, "signal_name", "SIGINT")
                click.echo(
                    f"Stopped at once by {name}: what was saved before it is kept."
                    f" {at_once}",
                    err=True,
                )
                raise SystemExit(stop_exit_code(Interrupted("", "", name))) from None

        return wrapper

    return decorate


def world_from_env():
    """This process's World from torchrun's environment (one CPU process without
    torchrun).
    """
    from eoid.devices import init_world

    return init_world()


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML recipe, e.g. configs/hico_ua.toml.",
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one config field, e.g. --set loss.distill=500 (repeatable).",
)


def verb_options(command):
    """--verb-classifier, --clip, --clip-weights, --blend-weight, --prior: where the
    verb scores of `evaluate` and `predict` come from (the [verbs] section; the
    teacher of clip and blend)."""
    options = [
        click.option(
            "--verb-classifier",
            type=click.Choice(["student", "clip", "blend"]),
            help=(
                "student (default): its own verb scores; clip: CLIP's on each predicted"
                " pair's union crop (Table 2); blend: student^(1-w) x CLIP^w (w:"
                " --blend-weight)."
            ),
        ),
        click.option(
            "--clip",
            help=(
                "With clip or blend: open_clip model, e.g. RN50x16-quickgelu "
                "(default RN50x16)."
            ),
        ),
        click.option(
            "--clip-weights",
            help=(
                "With clip or blend: pretrained tag or local file, openai|PATH "
                "(default openai)."
            ),
        ),
        click.option(
            "--blend-weight",
            type=float,
            help=(
                "With blend: CLIP's share w in [0, 1] (verbs.blend_weight, default"
                " 0.5)."
            ),
        ),
        click.option(
            "--prior/--no-prior",
            default=None,
            help=(
                "With clip or blend: CLIP's softmax over the predicted object's HOIs"
                " only (the teacher's mask; default on)."
            ),
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def load_under_checkpoint(cls, config_path, overrides, **flags):
    """Load an evaluate/predict config whose [augment] and [post] default to the
    checkpoint's (or exported ONNX file's) training recipe instead of the HICO-DET
    defaults."""
    cfg = load_config(cls, config_path, overrides, **flags)
    if getattr(cfg, "onnx", "") and not cfg.checkpoint:
        from eoid.pipeline.evaluation.onnx_student import onnx_evaluation_recipe

        return load_config(
            cls,
            config_path,
            overrides,
            under=onnx_evaluation_recipe(Path(cfg.onnx)),
            **flags,
        )
    if not cfg.checkpoint:
        return cfg
    from eoid.checkpoint import evaluation_recipe

    return load_config(
        cls,
        config_path,
        overrides,
        under=evaluation_recipe(Path(cfg.checkpoint)),
        under_source=f"{cfg.checkpoint} (its training recipe)",
        **flags,
    )


def as_text(path: Path | None) -> str | None:
    """A path flag as the config's string field (None: the flag was not given)."""
    return None if path is None else str(path)
