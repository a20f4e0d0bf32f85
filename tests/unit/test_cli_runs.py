"""``a2r ask`` / ``a2r resume`` in-process, on fake models: what the CLI promises when a run
stops (Ctrl-C, a failure, a bad question), and the problems it reports before any model call
(an unusable ``--db``, a broken ``prompts_dir``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from a2r_graph import build_graph, threads
from a2r_graph.serving import cli
from tests.fakes import Hang, connection_error, explorer_replies, factory, reply, scripted

QUESTION = "What is 6*7?"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("A2R_") and name != "A2R_CACHE_DIR":
            monkeypatch.delenv(name)
    monkeypatch.setenv("A2R_EXPLORER__MODEL", "explorer-model")
    monkeypatch.setenv("A2R_SYNTHESIZER__MODEL", "synthesizer-model")
    monkeypatch.setenv("A2R_SYNTHESIZER__CONTEXT_WINDOW", "32768")  # no server asked
    monkeypatch.setenv("A2R_MAX_ATTEMPTS", "1")


@pytest.fixture
def models(monkeypatch):
    """The fakes every ``a2r`` run of the test calls: ``models(explorer, synthesizer)``."""

    def use(explorer, synthesizer):
        fake = partial(build_graph, factory(explorer, synthesizer))
        monkeypatch.setattr(cli, "build_graph", fake)
        return explorer, synthesizer

    return use


def a2r(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


async def saved(db: Path, thread_id: str):
    async with threads.sqlite_checkpointer(db) as checkpointer:
        return await build_graph(checkpointer=checkpointer).aget_state(
            threads.thread_config(thread_id)
        )


# --------------------------------------------------------------------------------------------
# Ctrl-C


def _main_thread_asleep_in_the_loop(quiet_s: float = 1.0, timeout: float = 20.0) -> None:
    """Until the main thread has slept in the event loop's epoll_wait, without waking once,
    for ``quiet_s`` (Linux's /proc; elsewhere just a pause): only then is nothing but a
    signal left to wake it."""
    task = Path(f"/proc/self/task/{threading.main_thread().native_id}")
    deadline, quiet_since, last = time.monotonic() + timeout, None, None
    while time.monotonic() < deadline:
        try:
            asleep = "epoll" in (task / "wchan").read_text()
            switches = (task / "status").read_text().split("voluntary_ctxt_switches:")[1]
        except (OSError, IndexError):
            time.sleep(quiet_s)
            return
        if not asleep:
            quiet_since = last = None
        elif switches != last or quiet_since is None:
            quiet_since, last = time.monotonic(), switches
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.01)
    raise AssertionError("the run never settled with its requests hanging")


def _ctrl_c_from_another_thread(calls: list, started: int):
    """A thread that, once ``started`` requests hang and the main thread sleeps in the event
    loop, sends SIGINT to itself (not the main thread), as the kernel may; if the command has
    not returned 10 s later, to the main thread. Returns (thread, outcome, returned event)."""
    outcome: dict[str, float | bool] = {}
    returned = threading.Event()

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 30
        while len(calls) < started and time.monotonic() < deadline:
            time.sleep(0.01)
        _main_thread_asleep_in_the_loop()
        outcome["sent"] = time.monotonic()
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # taken by this thread
        if not returned.wait(10):  # the run did not stop: let the main thread take it
            outcome["lost"] = True
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    helper = threading.Thread(target=press_ctrl_c, daemon=True)
    helper.start()
    return helper, outcome, returned


def test_ctrl_c_stops_the_run_whichever_thread_takes_it(models, capsys, tmp_path):
    """The kernel hands a process's SIGINT to any of its threads that does not block it.
    Taken by another thread than the main one, while the main thread sleeps in the event loop
    (two requests hang), asyncio.run's handler waited for something to wake the loop: the
    requests' timeout, 600 s. Ctrl-C must stop the run at once, whichever thread took it."""
    hung = scripted(*explorer_replies(2), Hang(), Hang())
    explorer, _ = models(hung, scripted())
    helper, outcome, returned = _ctrl_c_from_another_thread(explorer.calls, 4)
    db = tmp_path / "threads.sqlite"
    try:
        code, err = a2r(capsys, "ask", QUESTION, "--n", "4", "--db", str(db), "--thread", "t")
    finally:
        returned.set()
        helper.join(15)
    stopped_after = time.monotonic() - outcome["sent"]
    assert not outcome.get("lost"), "SIGINT taken by another thread did not stop the run"
    assert code == 130 and stopped_after < 10, (code, stopped_after)
    assert "a2r: interrupted" in err
    assert "a2r resume t " in err  # the run is saved and resumable
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # left as found

    snapshot = asyncio.run(saved(db, "t"))
    assert snapshot.next  # unfinished: `a2r resume` finishes it
    explorer, synthesizer = models(scripted(*explorer_replies(4)), scripted(reply("\\boxed{7}")))
    code, err = a2r(capsys, "resume", "t", "--n", "4", "--db", str(db))
    assert code == 0, err
    assert len(explorer.calls) == 2  # only the 2 paths that hung, not the 2 that answered
    finished = asyncio.run(saved(db, "t")).values
    assert sorted(path["index"] for path in finished["paths"]) == [0, 1, 2, 3]


# --------------------------------------------------------------------------------------------
# "The run is saved as thread ...": only when it is


def test_an_invalid_question_promises_no_saved_run(models, capsys, tmp_path):
    explorer, _ = models(scripted(), scripted())
    db = tmp_path / "threads.sqlite"
    code, err = a2r(capsys, "ask", "   ", "--db", str(db), "--thread", "t")
    assert code == 2
    assert "question must be a non-empty string" in err
    assert "saved" not in err and "a2r resume" not in err
    assert not asyncio.run(saved(db, "t")).values and explorer.calls == []


def test_a_memory_db_promises_no_saved_run_and_a_file_one_does(models, capsys, tmp_path):
    models(scripted(connection_error(), connection_error()), scripted())
    code, err = a2r(capsys, "ask", QUESTION, "--n", "2", "--db", ":memory:", "--thread", "t")
    assert code == 1 and "only 0 explorer path(s) succeeded" in err
    assert "saved" not in err and "a2r resume" not in err

    db = tmp_path / "threads.sqlite"
    models(scripted(connection_error(), connection_error()), scripted())
    code, err = a2r(capsys, "ask", QUESTION, "--n", "2", "--db", str(db), "--thread", "t")
    assert code == 1
    assert "The run is saved as thread t;" in err
    assert f"a2r resume t --n 2 --db {db}" in err
    assert asyncio.run(saved(db, "t")).next


# --------------------------------------------------------------------------------------------
# Problems found before any model call


def _read_only(path: Path) -> Path:
    """``path`` made read-only even for root (``chattr +i``), else the test is skipped."""
    path.chmod(0o444)
    try:
        open(path, "r+b").close()
    except PermissionError:
        return path
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("cannot make a file read-only for this user (root without chattr)")
    return path


@pytest.fixture
def unusable_dbs(tmp_path):
    directory = tmp_path / "a-directory.sqlite"
    directory.mkdir()
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"not a SQLite file, whatever its name says " * 40)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    read_only = tmp_path / "read-only.sqlite"
    asyncio.run(saved(read_only, "t"))  # a real run database ...
    _read_only(read_only)  # ... that cannot be written
    yield {
        directory: "it is a directory",
        corrupt: "file is not a database",
        blocked / "threads.sqlite": f"its folder {blocked} cannot be made: a file is in the way",
        read_only: "attempt to write a readonly database",
    }
    subprocess.run(["chattr", "-i", str(read_only)], capture_output=True, check=False)


def test_an_unusable_db_is_reported_before_any_model_call(models, capsys, unusable_dbs):
    explorer, synthesizer = models(scripted(), scripted())
    for path, reason in unusable_dbs.items():
        for argv in (["ask", QUESTION, "--db", str(path)], ["resume", "t", "--db", str(path)]):
            code, err = a2r(capsys, *argv)
            assert code == 2, (argv, err)
            assert err.startswith(f"a2r: cannot use --db {path}: {reason}; pass another path"), err
            assert "Traceback" not in err and "a2r resume" not in err
    assert explorer.calls == [] and synthesizer.calls == []


def test_an_unusable_db_from_the_environment_names_its_variable(
    models, capsys, monkeypatch, tmp_path
):
    models(scripted(), scripted())
    monkeypatch.setenv("A2R_CHECKPOINT_DB", str(tmp_path))
    code, err = a2r(capsys, "ask", QUESTION)
    assert code == 2
    assert f"a2r: cannot use A2R_CHECKPOINT_DB {tmp_path}: it is a directory" in err


def test_a_broken_prompts_dir_is_reported_before_any_model_call(
    models, capsys, monkeypatch, tmp_path
):
    explorer, synthesizer = models(scripted(), scripted())
    (tmp_path / "synthesizer.txt").write_text("Question: {question}\nNo references.")
    monkeypatch.setenv("A2R_PROMPTS_DIR", str(tmp_path))
    code, err = a2r(capsys, "ask", QUESTION, "--db", str(tmp_path / "threads.sqlite"))
    assert code == 2
    assert "prompts_dir" in err and "synthesizer.txt lacks the placeholder(s) {references}" in err
    assert "A2R_PROMPTS_DIR" in err and "Traceback" not in err

    monkeypatch.setenv("A2R_PROMPTS_DIR", str(tmp_path / "missing"))
    code, err = a2r(capsys, "ask", QUESTION, "--db", str(tmp_path / "threads.sqlite"))
    assert code == 2 and f"prompts_dir {tmp_path / 'missing'} does not exist" in err
    assert explorer.calls == [] and synthesizer.calls == []


def test_the_cli_process_reports_a_directory_db_without_a_traceback(tmp_path):
    """The real process: no thread of aiosqlite's left to print after the loop closed."""
    env = {**os.environ, "A2R_EXPLORER__MODEL": "e", "A2R_SYNTHESIZER__MODEL": "s"}
    shown = subprocess.run(
        [sys.executable, "-m", "a2r_graph.serving.cli", "ask", QUESTION, "--db", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 2
    assert shown.stderr == (
        f"a2r: cannot use --db {tmp_path}: it is a directory; pass another path with "
        "--db PATH (or a postgresql:// DSN), or --db :memory: to keep nothing\n"
    )


def test_ctrl_c_stops_an_eval_whichever_thread_takes_it(models, monkeypatch, capsys, tmp_path):
    """``a2r eval`` too: SIGINT taken by a helper thread while every request hangs."""
    for module in ("math_verify", "matplotlib", "reasoning_gym", "tqdm"):
        pytest.importorskip(module)
    from a2r_graph.eval import command as eval_command

    explorer = scripted(Hang(), Hang())
    fake = partial(build_graph, factory(explorer, scripted()))
    monkeypatch.setattr(eval_command, "build_graph", fake)
    problems = tmp_path / "problems.jsonl"
    problems.write_text('{"id": "a", "problem": "What is 6*7?", "answer": "42"}\n')
    helper, outcome, returned = _ctrl_c_from_another_thread(explorer.calls, 2)
    try:
        code, err = a2r(capsys, "eval", str(problems), "--n", "2", "--out", str(tmp_path / "out"))
    finally:
        returned.set()
        helper.join(15)
    assert not outcome.get("lost"), "SIGINT taken by another thread did not stop the eval"
    assert code == 130 and time.monotonic() - outcome["sent"] < 10
    assert "run the same command again to go on" in err


def test_credentials_in_a_base_url_are_never_printed(capsys, caplog, monkeypatch, tmp_path):
    """Retry logs, the error and the printed resume command show ``***@``, not the password."""
    monkeypatch.setenv("A2R_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("A2R_RETRY_INITIAL_WAIT_S", "0")
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens there: the call fails at once
    url = f"http://alice:s3cret-pw@127.0.0.1:{port}/v1"
    code, err = a2r(
        capsys,
        *("ask", QUESTION, "--n", "1", "--explorer-url", url, "--thread", "t", "--timeout", "5"),
        *("--db", str(tmp_path / "t.db")),
    )
    assert code == 1
    assert "s3cret-pw" not in err and "alice" not in err
    assert f"http://***@127.0.0.1:{port}/v1" in err  # in the error and the resume command
    assert "a2r resume t " in err and "put it back" in err
    assert "attempt 1 to http://***@127.0.0.1" in caplog.text  # the retry was logged
    assert "s3cret-pw" not in caplog.text
