"""Stop signals for long phases: SIGINT/SIGTERM set a flag, the work stops at its next
safe point.

`eoid train` checks the flag after every batch and saves its position; `eoid
cache-teacher` checks it after every block of teacher rows. A second signal stops at
once (StoppedAtOnce, a KeyboardInterrupt naming the signal; the CLI exits 130 or 143):
what was saved at the last safe point stays as it is.
"""

from __future__ import annotations

import signal
from typing import Any

from eoid.errors import StoppedAtOnce


class StopFlag:
    """Context manager: while inside, SIGINT and SIGTERM set `raised` to the signal's
    name.
    """

    def __init__(self) -> None:
        self.raised: str | None = None
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self.raised is not None

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with their owner
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.raised:  # a second Ctrl-C: stop now, the last safe point stays as it is
            raise StoppedAtOnce(name)
        self.raised = name

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
