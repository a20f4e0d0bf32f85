"""Ctrl-C during an asyncio run: stop at once, even while every request hangs."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Interrupted(Exception):
    """Ctrl-C (SIGINT) stopped the run; what finished is saved."""


async def interruptible(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` in the running task; Ctrl-C (SIGINT) raises ``Interrupted``.

    SIGINT goes through the event loop's own handler (``loop.add_signal_handler``), not
    ``asyncio.run``'s: that one is a Python-level handler, which runs only in the main thread
    and only once the main thread wakes up. The kernel may hand the signal to any thread of
    the process (aiosqlite's, the executor's), and with every request hanging nothing wakes
    the main thread until a request times out. ``add_signal_handler`` writes the signal to
    the loop's wakeup fd from whichever thread takes it, so Ctrl-C stops the run at once.
    """
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None, "interruptible() runs inside a task"
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:  # a second Ctrl-C while the first one unwinds
            raise KeyboardInterrupt
        main_task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread; Windows
        taken = False  # asyncio.run's own handling stays
    else:
        taken = True
    try:
        return await awaitable
    except asyncio.CancelledError:
        if interrupts:
            raise Interrupted from None
        raise
    finally:
        if taken:
            loop.remove_signal_handler(signal.SIGINT)
