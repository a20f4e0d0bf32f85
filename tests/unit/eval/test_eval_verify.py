"""math-verify checks that hang: bounded by their own running time, sparing the others."""

import asyncio
import time

import pytest

from a2r_graph.eval.verify import Verifier

pytest.importorskip("math_verify", reason="math-verify (pip install 'a2r-graph[eval]')")

# A real gold answer on which math-verify's verify() runs for minutes (sympy evaluates it).
HANGS = "10^{10^{10}}"
NORMAL = [("7", "7", True), ("1/2", "0.5", True), ("3", "4", False), ("\\frac{1}{3}", "1/3", True)]


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_hung_check_is_not_equivalent_and_spares_the_checks_beside_it(workers):
    with Verifier(timeout_s=2, workers=workers) as verifier:
        checks = [(HANGS, "10", False), *NORMAL, (HANGS, "11", False)]
        results = await asyncio.gather(*(verifier.correct(g, p) for g, p, _ in checks))

        # queued behind a hung check, or in flight beside it when its worker was killed:
        # still scored on their own (and no BrokenProcessPool)
        assert results == [expected for _, _, expected in checks]
        assert verifier.timed_out == {(HANGS, "10"), (HANGS, "11")}
        started = time.perf_counter()
        assert not verifier.correct_sync(HANGS, "12")  # the synchronous path too
        assert time.perf_counter() - started < 60  # bounded (a replaced worker starts first)
        assert verifier.correct_sync("5", "5.0")  # and the worker after it answers
        assert (HANGS, "12") in verifier.timed_out and ("5", "5.0") not in verifier.timed_out
