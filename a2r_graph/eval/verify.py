"""Answer equivalence with HF ``math-verify``, in worker processes with a time bound.

math-verify bounds its own time with ``signal.alarm``, which only works in a main thread. Here
its timeouts are off (``parsing_timeout=None``, ``timeout_seconds=None``) and every check runs
in a worker process instead, one check per worker at a time. A check's deadline counts only
its own running time: it starts when an idle, started worker takes the check, never while the
check waits for a worker (behind a hung check) or while a worker starts. A check that outlasts
it counts as "not equivalent" and is recorded in ``Verifier.timed_out``; its worker is killed
and replaced, and no other check is affected (the other workers, and the checks waiting for
one, go on).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from multiprocessing.connection import Connection
from typing import Self

logger = logging.getLogger(__name__)


def _as_latex(answer: str) -> str:
    """A bare answer as math-verify finds it most reliably: inside ``\\boxed{}``."""
    return answer if "\\boxed" in answer else f"\\boxed{{{answer}}}"


@lru_cache(maxsize=4096)
def _parsed(answer: str) -> list:
    from math_verify import parse  # imported in the worker only

    # Its "timeout is disabled" warning is the point here: the pool bounds the time.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    return parse(_as_latex(answer), parsing_timeout=None)


def verify_in_worker(gold: str, prediction: str) -> bool:
    """math-verify's ``verify(gold, prediction)``; gold first: it is not symmetric."""
    from math_verify import verify

    gold_parsed, predicted = _parsed(gold), _parsed(prediction)
    if not gold_parsed or not predicted:
        return gold.strip() == prediction.strip() != ""
    return bool(verify(gold_parsed, predicted, timeout_seconds=None))


def _serve(connection: Connection) -> None:
    """A worker: warm up (imports, a first check), say so, then answer checks one at a time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        verify_in_worker("1", "1")
    except BaseException as error:  # noqa: BLE001 (e.g. math-verify is not installed)
        connection.send(("failed", f"{type(error).__name__}: {error}"))
        return
    connection.send(("ready", None))
    while True:
        try:
            check = connection.recv()
        except EOFError:
            return
        if check is None:
            return
        try:
            connection.send(("done", verify_in_worker(*check)))
        except Exception as error:  # noqa: BLE001 (math-verify catches its own errors)
            connection.send(("error", f"{type(error).__name__}: {error}"))


class VerifierError(RuntimeError):
    """A math-verify worker could not be started (not a wrong answer: the check never ran)."""


class _Worker:
    """One worker process and its end of the pipe."""

    def __init__(self, context: multiprocessing.context.SpawnContext):
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs,), daemon=True)
        self.process.start()
        theirs.close()
        self.ready = False

    def wait_ready(self, timeout_s: float) -> None:
        """Wait (not counted in any check's deadline) until the worker has warmed up."""
        if self.ready:
            return
        try:
            if not self.connection.poll(timeout_s):
                raise VerifierError(f"a math-verify worker did not start in {timeout_s:g} s")
            status, detail = self.connection.recv()
        except (EOFError, OSError) as error:
            raise VerifierError(f"a math-verify worker died while starting ({error!r})") from None
        if status != "ready":
            raise VerifierError(f"a math-verify worker could not start: {detail}")
        self.ready = True

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.connection.close()


class Verifier:
    """``await verifier.correct(gold, prediction)`` off the event loop, each check bounded.

    ``workers`` checks run at once, each in its own process; a check that runs longer than
    ``timeout_s`` counts as "not equivalent" (and lands in ``timed_out``); waiting for a free
    worker does not count. Usable from several threads (``correct_sync``) and event loops.
    """

    def __init__(self, timeout_s: float = 10.0, workers: int = 1, start_timeout_s: float = 300.0):
        self.timeout_s, self.workers, self.start_timeout_s = timeout_s, workers, start_timeout_s
        self.timed_out: set[tuple[str, str]] = set()
        """The (gold, prediction) checks that overran ``timeout_s`` (scored not equivalent)."""
        self._cache: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")  # the caller has threads
        self._idle: queue.SimpleQueue[_Worker] | None = None
        self._all: set[_Worker] = set()
        self._threads: ThreadPoolExecutor | None = None
        self._closed = False

    async def correct(self, gold: str, prediction: str | None) -> bool:
        known = self._known(gold, prediction)
        if known is not None or prediction is None:
            return bool(known)
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="verify")
            threads = self._threads
        return await asyncio.get_running_loop().run_in_executor(
            threads, self._check, gold, prediction
        )

    def correct_sync(self, gold: str, prediction: str | None) -> bool:
        """``correct`` for synchronous callers (a trainer's reward function)."""
        known = self._known(gold, prediction)
        if known is not None or prediction is None:
            return bool(known)
        return self._check(gold, prediction)

    def _known(self, gold: str, prediction: str | None) -> bool | None:
        """The answer without a check (no prediction, or checked before), else None."""
        if prediction is None or not prediction.strip():
            return False
        return self._cache.get((gold, prediction))

    def _check(self, gold: str, prediction: str) -> bool:
        """One check on an idle worker (waiting for one as long as it takes), bounded by
        ``timeout_s`` from the moment the worker has it. A worker that dies mid-check (not a
        hang: e.g. killed from outside) is replaced and the check run once more."""
        idle = self._workers()
        worker = idle.get()
        try:
            for attempt in (1, 2):
                try:
                    worker.wait_ready(self.start_timeout_s)
                except VerifierError:
                    worker = self._replace(worker)
                    raise
                try:
                    worker.connection.send((gold, prediction))
                    finished = worker.connection.poll(self.timeout_s)
                    reply = worker.connection.recv() if finished else None
                except (EOFError, OSError):  # the worker died
                    worker = self._replace(worker)
                    if attempt == 2:
                        raise VerifierError("math-verify died on this check twice") from None
                    continue
                if reply is None:  # overran: the stuck worker must go
                    worker = self._replace(worker)
                    self.timed_out.add((gold, prediction))
                    result = False
                else:
                    status, value = reply
                    if status == "error":
                        logger.warning("math-verify failed on %r, %r: %s", gold, prediction, value)
                    result = status == "done" and bool(value)
                self._cache[(gold, prediction)] = result
                return result
            raise AssertionError("unreachable")
        finally:
            idle.put(worker)

    def _workers(self) -> queue.SimpleQueue[_Worker]:
        with self._lock:
            if self._closed:
                raise VerifierError("the verifier is closed")
            if self._idle is None:
                self._idle = queue.SimpleQueue()
                for _ in range(self.workers):
                    self._idle.put(self._start())
            return self._idle

    def _start(self) -> _Worker:
        worker = _Worker(self._context)
        self._all.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill ``worker`` and start another in its place (it warms up while not counted)."""
        worker.stop()
        with self._lock:
            self._all.discard(worker)
            if self._closed:
                raise VerifierError("the verifier is closed")
            return self._start()

    def close(self) -> None:
        """Stop the workers (a check still running is cut off)."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, None
            workers, self._all = list(self._all), set()
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
