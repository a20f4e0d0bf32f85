"""Answer equivalence with HF ``math-verify``, in worker processes with a time bound.

math-verify bounds its own time with ``signal.alarm``, which only works in a main thread. Here
its timeouts are off (``parsing_timeout=None``, ``timeout_seconds=None``) and every check runs
in a process pool instead, awaited with a deadline: a check that outlasts it counts as "not
equivalent", and the pool is replaced (the stuck worker is killed).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from functools import lru_cache
from typing import Self


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


class Verifier:
    """``await verifier.correct(gold, prediction)`` off the event loop, each check bounded."""

    def __init__(self, timeout_s: float = 10.0, workers: int = 1):
        self.timeout_s, self.workers = timeout_s, workers
        self._pool: ProcessPoolExecutor | None = None
        self._cache: dict[tuple[str, str], bool] = {}

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: the caller has threads (asyncio's, SQLite's), which fork would copy badly
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self._pool

    async def correct(self, gold: str, prediction: str | None) -> bool:
        known = self._known(gold, prediction)
        if known is not None:
            return known
        future = self._executor().submit(verify_in_worker, gold, prediction)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            result = self._timed_out()
        self._cache[(gold, prediction)] = result
        return result

    def correct_sync(self, gold: str, prediction: str | None) -> bool:
        """``correct`` for synchronous callers (a trainer's reward function)."""
        known = self._known(gold, prediction)
        if known is not None:
            return known
        future = self._executor().submit(verify_in_worker, gold, prediction)
        try:
            result = future.result(timeout=self.timeout_s)
        except FutureTimeoutError:
            result = self._timed_out()
        self._cache[(gold, prediction)] = result
        return result

    def _known(self, gold: str, prediction: str | None) -> bool | None:
        """The answer without a check (no prediction, or checked before), else None."""
        if prediction is None or not prediction.strip():
            return False
        return self._cache.get((gold, prediction))

    def _timed_out(self) -> bool:
        self._replace_pool()  # the stuck worker must go
        return False

    def _replace_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
