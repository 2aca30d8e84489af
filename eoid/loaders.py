"""DataLoaders whose workers end with their job: the one home of every DataLoader eoid
builds.

Training, the teacher's crop workers and every inference loop build their loader here,
because two things go wrong with a bare `torch.utils.data.DataLoader`:

- torch re-raises a worker's exception in the main process as a new exception whose
  message is the worker's whole traceback ("Caught DataError in DataLoader worker
  process 1. Original Traceback ..."): a user's mistake (a truncated image) became ten
  lines of stack;
- workers that ignore SIGINT/SIGTERM (so a stop signal reaches only the main process,
  which stops at a safe point) are never ended by multiprocessing's exit handler, which
  sends SIGTERM and then waits for them: after an error the process hung forever in that
  wait.

So a worker hands an EoidError back as a value (`WorkerFailure`) that the main process
raises again with its own one-line message, and leaving the `with WorkerLoader(...)`
block (normally or by any exception) ends the workers, killing any that do not stop
within a few seconds. An exit handler does the same for a loop left suspended (a
generator the caller never finished).
"""

from __future__ import annotations

import atexit
import os
import signal
import weakref
from typing import Any, Callable, Iterator, NamedTuple

import torch

from eoid.errors import EoidError


class WorkerFailure(NamedTuple):
    """What a worker returns instead of an item when reading it raised an EoidError."""

    error_type: type
    message: str


class _ReportErrors(torch.utils.data.Dataset):
    """`dataset`, with an EoidError of an item returned as a WorkerFailure instead of
    raised.
    """

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Any) -> Any:
        try:
            return self.dataset[index]
        except EoidError as err:
            return WorkerFailure(type(err), str(err))


class _Collate:
    """The loader's collate function, unless an item of the batch is a WorkerFailure:
    then that.
    """

    def __init__(self, collate: Callable[[Any], Any], batched: bool):
        self.collate, self.batched = collate, batched

    def __call__(self, items: Any) -> Any:
        failed = [
            x
            for x in (items if self.batched else [items])
            if isinstance(x, WorkerFailure)
        ]
        return failed[0] if failed else self.collate(items)


def ignore_stop_signals(worker_id: int) -> None:
    """Worker init: SIGINT/SIGTERM are the main process's, which stops at its next safe
    point.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# iterators whose workers may still run; the exit handler ends them (a weak set: no
# iterator is kept alive by it). Module state on purpose: it mirrors multiprocessing's
# own list of children.
_LIVE: "weakref.WeakSet[Any]" = weakref.WeakSet()


def end_workers(iterator: Any) -> None:
    """Stop the worker processes of a DataLoader iterator now: politely, then with
    SIGKILL.
    """
    # torch's own clean shutdown
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    for worker in getattr(iterator, "_workers", []):
        if worker.is_alive():  # e.g. it ignores SIGTERM
            os.kill(worker.pid, signal.SIGKILL)
            worker.join(timeout=5)
    _LIVE.discard(iterator)


@atexit.register
def _end_live_workers() -> None:
    """Registered after multiprocessing's exit handler, so it runs first: nothing is
    left to wait on.
    """
    for iterator in list(_LIVE):
        for worker in getattr(iterator, "_workers", []):
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGKILL)


class WorkerLoader:
    """A DataLoader (same arguments) read inside `with`: leaving the block ends its
    workers.

    Iterate it as often as needed (one pass per epoch); an EoidError raised by the
    dataset in a worker is raised again here with its own message.
    `stop_signals_to_main`: workers ignore SIGINT/SIGTERM (for phases with a StopFlag,
    which stop at a safe point).
    """

    def __init__(
        self, dataset: Any, *, stop_signals_to_main: bool = False, **loader_kwargs: Any
    ):
        batched = (
            loader_kwargs.get("batch_sampler") is not None
            or loader_kwargs.get("batch_size", 1) is not None
        )
        default = (
            torch.utils.data.default_collate
            if batched
            else torch.utils.data.default_convert
        )
        collate = _Collate(loader_kwargs.pop("collate_fn", None) or default, batched)
        if stop_signals_to_main and loader_kwargs.get("num_workers", 0) > 0:
            loader_kwargs["worker_init_fn"] = ignore_stop_signals
        self.loader = torch.utils.data.DataLoader(
            _ReportErrors(dataset), collate_fn=collate, **loader_kwargs
        )
        self._iterators: list[Any] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.loader)
        self._iterators.append(iterator)
        _LIVE.add(iterator)
        try:
            for batch in iterator:
                if isinstance(batch, WorkerFailure):
                    raise batch.error_type(batch.message)
                yield batch
        finally:
            self._end(iterator)

    def _end(self, iterator: Any) -> None:
        end_workers(iterator)
        if iterator in self._iterators:
            self._iterators.remove(iterator)

    def close(self) -> None:
        """End the workers of every pass still open (a pass left by an exception in the
        caller).
        """
        for iterator in list(self._iterators):
            self._end(iterator)

    def __enter__(self) -> "WorkerLoader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
