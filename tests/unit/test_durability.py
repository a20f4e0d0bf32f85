"""Durable runs: a failed run resumes on its SQLite thread without re-running what finished."""

import asyncio
import copy

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver

from a2r_graph import EndpointUnavailableError, NotEnoughPathsError, build_graph, threads
from a2r_graph.errors import InvalidQuestionError, UnknownThreadError
from tests import fakes
from tests.fakes import (
    Hang,
    explorer_replies,
    factory,
    make_context,
    reply,
    scripted,
)

QUESTION = "What is 6*7?"


@pytest.fixture
def db(tmp_path):
    return tmp_path / "threads.sqlite"


async def run_ask(db, explorer, synthesizer, thread, context, question=QUESTION):
    """``threads.ask`` in a process of its own: a new graph on a new connection to ``db``."""
    async with threads.sqlite_checkpointer(db) as checkpointer:
        graph = build_graph(factory(explorer, synthesizer), checkpointer=checkpointer)
        return await threads.ask(graph, question, thread, context)


async def run_resume(db, explorer, synthesizer, thread, context):
    async with threads.sqlite_checkpointer(db) as checkpointer:
        graph = build_graph(any_explorer(explorer, synthesizer), checkpointer=checkpointer)
        return await threads.resume(graph, thread, context)


def any_explorer(explorer, synthesizer):
    """``factory``, whatever the explorer stage's model is called."""
    return lambda stage, _: synthesizer if stage.model == "synthesizer-model" else explorer


async def test_synthesizer_failure_resumes_without_running_the_explorers_again(db):
    down = scripted(fakes.connection_error(), fakes.connection_error())
    with pytest.raises(EndpointUnavailableError, match="synthesizer"):
        await run_ask(db, scripted(*explorer_replies(4)), down, "t", make_context(max_attempts=2))

    explorer, synthesizer = scripted(), scripted(reply("\\boxed{42}"))
    result = await run_resume(db, explorer, synthesizer, "t", make_context())

    assert explorer.calls == [] and len(synthesizer.calls) == 1
    assert result["boxed_answer"] == "42"
    answers = [p["answer"] for p in result["paths"]]
    assert answers == [f"answer {i}: \\boxed{{{i}}}" for i in range(4)]
    assert result["usage"]["explore"]["calls"] == 4  # the run's paths, each paid for once


class SlowSaver(InMemorySaver):
    """A checkpointer whose saves take a while, like a busy database."""

    async def aput(self, *args, **kwargs):
        await asyncio.sleep(0.2)
        return await super().aput(*args, **kwargs)

    async def aput_writes(self, *args, **kwargs):
        await asyncio.sleep(0.2)
        return await super().aput_writes(*args, **kwargs)

    def killed(self) -> InMemorySaver:
        """What a SIGKILL now leaves: the saves that finished, not the ones under way."""
        saver = InMemorySaver()
        for name in ("storage", "writes", "blobs"):
            setattr(saver, name, copy.deepcopy(getattr(self, name)))
        return saver


async def test_a_run_killed_as_its_synthesis_starts_resumes_without_the_explorers():
    """Each step is saved before the next starts: with LangGraph's default ("async") the
    explorers' step could still be saving when the synthesizer is called, and be lost."""
    saver, synthesizer = SlowSaver(), scripted(Hang())
    graph = build_graph(factory(scripted(*explorer_replies(4)), synthesizer), checkpointer=saver)
    run = asyncio.create_task(threads.ask(graph, QUESTION, "t", make_context()))
    async with asyncio.timeout(60):  # a deadline for a broken run, not a timing
        while not synthesizer.calls:
            await asyncio.sleep(0.001)
    killed = saver.killed()
    run.cancel()

    explorer, synthesizer = scripted(), scripted(reply("\\boxed{42}"))
    graph = build_graph(factory(explorer, synthesizer), checkpointer=killed)
    result = await threads.resume(graph, "t", make_context())
    assert explorer.calls == [] and result["boxed_answer"] == "42"


async def test_too_few_paths_resumes_by_sampling_only_the_failed_ones(db):
    explorer = scripted(*explorer_replies(2), fakes.connection_error(), fakes.connection_error())
    context = make_context(n=4, min_paths=3, max_attempts=1)
    with pytest.raises(NotEnoughPathsError) as caught:
        await run_ask(db, explorer, scripted(), "t", context)
    assert len(caught.value.failures) == 2

    explorer, synthesizer = scripted(*explorer_replies(2)), scripted(reply("\\boxed{1}"))
    result = await run_resume(db, explorer, synthesizer, "t", context)

    assert len(explorer.calls) == 2  # only the two that failed
    assert [p["index"] for p in result["paths"]] == [0, 1, 2, 3]
    assert all(p["error"] is None for p in result["paths"])
    assert synthesizer.calls[0][0].count("</reference") == 4


async def test_unusable_paths_are_sampled_again_when_too_few_are_usable(db):
    """A path cut off by max_tokens is answered but unusable: kept, it would stop every
    resume with NotEnoughPathsError, whatever was fixed. The usable path is not paid again."""
    truncated = reply("<think>ran out of tokens", finish_reason="length")
    context = make_context(n=2, min_paths=2, max_attempts=1)
    with pytest.raises(NotEnoughPathsError, match="finish_reason=length"):
        await run_ask(db, scripted(truncated, *explorer_replies(1)), scripted(), "t", context)

    explorer, synthesizer = scripted(*explorer_replies(1)), scripted(reply("\\boxed{0}"))
    result = await run_resume(db, explorer, synthesizer, "t", context)

    assert len(explorer.calls) == 1  # only the truncated path, sampled again
    assert [p["error"] for p in result["paths"]] == [None, None]
    assert result["boxed_answer"] == "0"
    assert result["usage"]["explore"]["calls"] == 2

    # asking the same question again resumes the same way
    again = make_context(n=2, min_paths=2, max_attempts=1)
    with pytest.raises(NotEnoughPathsError):
        await run_ask(db, scripted(truncated, truncated), scripted(), "u", again)
    explorer = scripted(*explorer_replies(2))
    result = await run_ask(db, explorer, scripted(reply("\\boxed{1}")), "u", again)
    assert len(explorer.calls) == 2 and result["boxed_answer"] == "1"


async def test_an_answered_unusable_path_is_kept_while_enough_paths_are_usable(db):
    """With min_paths met, an answered path stays a sample (the eval judges it as one):
    only the path the server never answered is sampled again."""
    truncated = reply("<think>ran out of tokens", finish_reason="length")
    explorer = scripted(truncated, *explorer_replies(1), fakes.connection_error())
    with pytest.raises(NotEnoughPathsError):
        await run_ask(db, explorer, scripted(), "t", make_context(n=3, min_paths=2, max_attempts=1))

    explorer, synthesizer = scripted(*explorer_replies(1)), scripted(reply("\\boxed{0}"))
    context = make_context(n=3, min_paths=1, max_attempts=1)  # the fix: a lower min_paths
    result = await run_resume(db, explorer, synthesizer, "t", context)

    assert len(explorer.calls) == 1
    errors = [p["error"] for p in result["paths"]]
    assert errors.count(None) == 2
    assert errors[0] == "no answer component (finish_reason=length)"


async def test_asking_the_same_question_again_resumes_and_a_new_one_starts_fresh(db):
    explorer = scripted(*explorer_replies(3), *explorer_replies(2))
    synthesizer = scripted(fakes.connection_error(), reply("\\boxed{7}"), reply("\\boxed{8}"))
    context = make_context(n=3, max_attempts=1)
    with pytest.raises(EndpointUnavailableError):
        await run_ask(db, explorer, synthesizer, "t", context)
    again = await run_ask(db, explorer, synthesizer, "t", context, question=f" {QUESTION}\n")
    assert again["boxed_answer"] == "7" and len(explorer.calls) == 3

    other = await run_ask(db, explorer, synthesizer, "t", make_context(n=2), "What is 1+1?")
    assert other["boxed_answer"] == "8" and len(explorer.calls) == 5
    assert [p["index"] for p in other["paths"]] == [0, 1]


async def test_explorers_that_finished_before_a_timeout_are_kept(db):
    explorer = scripted(*explorer_replies(2), Hang(), Hang())
    async with threads.sqlite_checkpointer(db) as checkpointer:
        graph = build_graph(factory(explorer, scripted()), checkpointer=checkpointer)

        async def time_out_once_two_are_saved() -> None:
            async with asyncio.timeout(60):  # a deadline for a broken run, not a timing
                while len(await finished_tasks(graph, "t")) < 2:
                    await asyncio.sleep(0.01)
            timeout.reschedule(asyncio.get_running_loop().time())

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as timeout, asyncio.TaskGroup() as group:
                group.create_task(time_out_once_two_are_saved())
                await threads.ask(graph, QUESTION, "t", make_context())

    explorer, synthesizer = scripted(*explorer_replies(2)), scripted(reply("\\boxed{3}"))
    result = await run_resume(db, explorer, synthesizer, "t", make_context())

    assert len(explorer.calls) == 2
    assert result["boxed_answer"] == "3" and len(result["paths"]) == 4


async def finished_tasks(graph, thread_id: str) -> list:
    """The saved results of the thread's pending step's tasks (explorers that finished)."""
    snapshot = await graph.aget_state(threads.thread_config(thread_id))
    return [task for task in snapshot.tasks if task.result is not None]


async def test_a_finished_thread_resumes_to_its_saved_result_without_calls(db):
    synthesizer = scripted(reply("\\boxed{5}"))
    first = await run_ask(db, scripted(*explorer_replies(1)), synthesizer, "t", make_context(n=1))
    again = await run_resume(db, scripted(), scripted(), "t", make_context(n=1))
    assert again == first


async def test_unknown_thread_and_bad_question_write_nothing(db):
    with pytest.raises(UnknownThreadError, match="no run is saved under thread 'nope'"):
        await run_resume(db, scripted(), scripted(), "nope", make_context())
    explorer = scripted()
    with pytest.raises(InvalidQuestionError, match="non-empty string"):
        await run_ask(db, explorer, scripted(), "t", make_context(), question="   ")
    async with threads.sqlite_checkpointer(db) as checkpointer:
        assert await checkpointer.aget_tuple(threads.thread_config("t")) is None
    assert explorer.calls == []


async def test_a_write_started_as_the_checkpointer_closes_is_saved_not_cut_off(db):
    """LangGraph records a cancelled run's tasks (Ctrl-C, a timeout) in writes it starts while
    shutting the run down and does not wait for. Cut off by the connection's close, such a
    write left a transaction open that locked the file for the process's next run ("database
    is locked", now and then in the test above)."""
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    async with threads.sqlite_checkpointer(db) as checkpointer:
        config = await checkpointer.aput(config, empty_checkpoint(), {}, {})
        late = asyncio.create_task(checkpointer.aput_writes(config, [("paths", [])], "task-1"))
    assert late.done() and late.exception() is None

    async with threads.sqlite_checkpointer(db) as checkpointer:
        async with asyncio.timeout(4):  # under SQLite's 5 s wait for a lock
            await checkpointer.aput_writes(config, [("paths", [])], "task-2")
        saved = await checkpointer.aget_tuple(config)
    assert sorted(task for task, _, _ in saved.pending_writes) == ["task-1", "task-2"]


RESAMPLED = {
    "model": {"explorer": {"model": "other-explorer"}},
    "prompt": {"prompts": {"explorer": "Think step by step. {question}"}},
    "temperature": {"explorer": {"model": "explorer-model", "temperature": 1.0}},
    "seed": {"explorer": {"model": "explorer-model", "seed": 7}},
}


@pytest.mark.parametrize("setting", sorted(RESAMPLED))
async def test_resuming_with_other_explorer_settings_samples_every_path_again(db, caplog, setting):
    """Paths sampled with another model, prompt or sampling are not this run's samples."""
    explorer = scripted(*explorer_replies(2), fakes.connection_error(), fakes.connection_error())
    with pytest.raises(NotEnoughPathsError):
        await run_ask(db, explorer, scripted(), "t", make_context(n=4, min_paths=3, max_attempts=1))

    changed = make_context(n=4, min_paths=3, max_attempts=1, **RESAMPLED[setting])
    explorer, synthesizer = scripted(*explorer_replies(4)), scripted(reply("\\boxed{1}"))
    with caplog.at_level("WARNING", logger="a2r_graph"):
        result = await run_resume(db, explorer, synthesizer, "t", changed)

    assert len(explorer.calls) == 4 and len(result["paths"]) == 4
    assert f"the explorer's {setting} changed" in caplog.text
    assert "sampling them again" in caplog.text


async def test_a_synthesizer_failure_resumed_with_another_explorer_explores_again(db):
    """With the explorers done, resuming runs only the synthesizer, unless the explorer
    changed: then the references would be another model's."""
    down = scripted(fakes.connection_error())
    with pytest.raises(EndpointUnavailableError):
        await run_ask(
            db, scripted(*explorer_replies(2)), down, "t", make_context(n=2, max_attempts=1)
        )

    explorer, synthesizer = scripted(*explorer_replies(2)), scripted(reply("\\boxed{1}"))
    other = make_context(n=2, explorer={"model": "other-explorer"})
    result = await run_resume(db, explorer, synthesizer, "t", other)
    assert len(explorer.calls) == 2 and result["boxed_answer"] == "1"


@pytest.mark.parametrize(
    "fix",
    [
        {"explorer": {"model": "explorer-model", "max_tokens": 16384}},
        {"explorer": {"model": "explorer-model", "base_url": "http://moved:8000/v1"}},
    ],
    ids=["max_tokens raised", "server moved"],
)
async def test_a_fix_that_does_not_change_the_samples_keeps_them(db, caplog, fix):
    explorer = scripted(*explorer_replies(2), fakes.connection_error(), fakes.connection_error())
    with pytest.raises(NotEnoughPathsError):
        await run_ask(db, explorer, scripted(), "t", make_context(n=4, min_paths=3, max_attempts=1))

    fixed = make_context(n=4, min_paths=3, max_attempts=1, **fix)
    explorer, synthesizer = scripted(*explorer_replies(2)), scripted(reply("\\boxed{1}"))
    with caplog.at_level("WARNING", logger="a2r_graph"):
        result = await run_resume(db, explorer, synthesizer, "t", fixed)
    assert len(explorer.calls) == 2 and len(result["paths"]) == 4
    assert "changed" not in caplog.text
