"""The exception types a user can act on. The CLI prints them without a traceback."""

import re


class EoidError(Exception):
    """A problem the user can fix; the CLI prints it as one message and exits non-zero."""


class ConfigError(EoidError):
    """A TOML recipe or a command-line override that does not fit the config
    dataclasses.
    """


class DataError(EoidError):
    """An annotation file, image or record that cannot be used as it is."""


class CacheMismatchError(EoidError):
    """A teacher cache that does not fit the dataset, vocabulary or teacher asked for."""


class CheckpointError(EoidError):
    """A checkpoint file that is missing, truncated or built for another model or
    vocabulary.
    """


class WeightsNotFoundError(EoidError):
    """CLIP or backbone weights that are not on this machine (eoid never downloads them
    in tests).
    """


class LockedError(EoidError):
    """A cache or run directory that another live process is writing."""


class TrainingDiverged(EoidError):
    """A loss that became NaN or infinite; the last good checkpoint is kept."""


class Interrupted(EoidError):
    """SIGINT/SIGTERM reached a long job; progress was saved and the message says how to
    resume.

    Not a failure: the CLI prints `what` and `resume` as a saved run and exits 128 + the
    signal's number (130 for SIGINT, 143 for SIGTERM), as a shell does for a job a
    signal ended.
    """

    def __init__(self, what: str, resume: str, signal_name: str | None = None):
        super().__init__(f"{what}. {resume}")
        self.what = what  # what stopped and where the progress is saved
        self.resume = resume  # how to continue
        self.signal_name = signal_name  # "SIGINT", "SIGTERM", or None if not known


class StoppedAtOnce(KeyboardInterrupt):
    """A second SIGINT/SIGTERM: the job stops where it is, without reaching its next
    safe point.

    What was saved before is kept (every file is written atomically). The CLI exits 128
    + the signal's number, as for a graceful stop. A KeyboardInterrupt, so code that
    cleans up on Ctrl-C cleans up on it too.
    """

    def __init__(self, signal_name: str):
        super().__init__(f"stopped at once by a second {signal_name}")
        self.signal_name = signal_name


# a file that failed the safe load is never advised to be loaded unsafely: see
# first_line
UNSAFE_LOAD_ADVICE = (
    "Do not load it with a full unpickler (that would run its code): get the file "
    "again from its source and check its checksum"
)


def first_line(err: BaseException) -> str:
    """An exception's first line, at most 200 characters, for one-line error messages.

    torch's refusal under weights_only=True is reduced to its reason: its first line
    advises re-running with weights_only=False, which runs the file's code, so eoid
    never repeats it.
    """
    text = str(err)
    if text.startswith("Weights only load failed"):
        reason = re.search(
            r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)",
            text,
            re.S,
        )
        text = "weights-only load failed" + (
            f": {' '.join(reason[1].split())}" if reason else ""
        )
    return (text.splitlines() or ["(no message)"])[0][:200]
