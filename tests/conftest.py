"""Shared by every test: saved runs go to a temporary SQLite file, never the user's."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def checkpoint_db(tmp_path_factory):
    """``A2R_CHECKPOINT_DB`` for the CLI runs (in-process and subprocesses) of this session."""
    path = tmp_path_factory.mktemp("state") / "threads.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("A2R_CHECKPOINT_DB", str(path))
        yield path
