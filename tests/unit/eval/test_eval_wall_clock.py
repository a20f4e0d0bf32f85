"""The eval's wall time survives an invocation that is killed: it is written as problems finish."""

from __future__ import annotations

import json

from a2r_graph.eval import command
from a2r_graph.eval.command import WallClock


def test_a_killed_invocation_keeps_its_time_up_to_its_last_finished_problem(tmp_path, monkeypatch):
    now = iter([100.0, 100.0, 160.0, 1000.0, 1000.0, 1030.0, 1040.0])
    monkeypatch.setattr(command.time, "monotonic", lambda: next(now))
    first = WallClock(tmp_path)
    first.start()
    first.tick()  # a problem finished after 60 s; then the process is killed (no final tick)
    assert json.loads((tmp_path / "wall.json").read_text()) == {"invocations": 1, "wall_s": 60.0}

    second = WallClock(tmp_path)  # the rerun adds its own time to what was kept
    second.start()
    second.tick()
    second.tick()
    assert second.total == {"invocations": 2, "wall_s": 100.0}
    assert json.loads((tmp_path / "wall.json").read_text()) == second.total
    assert [p.name for p in tmp_path.iterdir()] == ["wall.json"]
