"""What the terminal shows: log lines above the progress bars, libraries quiet, a stop's
exit code.

A leaf: the CLI sets logging up once per command; the quickstart's child processes use
the same exit code for a graceful stop.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from eoid.errors import Interrupted


class _AboveBars(logging.Handler):
    """Writes log lines with tqdm.write, above the progress bars instead of through
    them.
    """

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


class _Format(logging.Formatter):
    """eoid's own INFO lines read as plain messages; other lines keep their level and
    logger.
    """

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO and record.name.startswith("eoid"):
            return record.getMessage()
        return super().format(record)


def configure_logging(verbose: bool) -> None:
    """eoid's own INFO lines on rank 0; other libraries' only from WARNING up, unless
    `verbose`.

    open_clip logs every model it builds at INFO on the root logger, matplotlib's font
    manager its font search: the root logger's level keeps them out of the terminal.
    """
    rank = int(os.environ.get("RANK", "0"))
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _AboveBars)]:
        root.removeHandler(handler)
    handler = _AboveBars()
    handler.setFormatter(_Format("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose and rank == 0 else logging.WARNING)
    eoid_level = logging.DEBUG if verbose else logging.INFO
    logging.getLogger("eoid").setLevel(eoid_level if rank == 0 else logging.WARNING)


def stop_exit_code(stop: Interrupted) -> int:
    """128 + the signal's number (130 SIGINT, 143 SIGTERM), as a shell reports a job a
    signal ended.
    """
    return 128 + int(getattr(signal, stop.signal_name or "", signal.SIGINT))
