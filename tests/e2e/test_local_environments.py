"""The ingest's execution environments behind the local gateway: one process per concurrent
invocation, module state kept per environment, failures reported like Lambda's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_pipeline.environments import ExecutionEnvironments, FunctionSpec, InvocationFailed

pytestmark = pytest.mark.integration

HANDLERS = "tests.e2e.environment_handlers"


def spec(handler: str, *, timeout_seconds: float = 10.0) -> FunctionSpec:
    return FunctionSpec(
        handler=f"{HANDLERS}.{handler}",
        function_name="test-function",
        timeout_seconds=timeout_seconds,
        memory_mb=128,
    )


@pytest.fixture
def pool_of(tmp_path: Path) -> Iterator[Any]:
    pools: list[ExecutionEnvironments] = []

    def make(handler: str, environments: int, **options: Any) -> ExecutionEnvironments:
        pool = ExecutionEnvironments(
            spec(handler, **options), log_path=tmp_path / "function.log", environments=environments
        )
        pool.start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def test_concurrent_invocations_run_at_once_each_in_its_own_process(
    pool_of: Any, tmp_path: Path
) -> None:
    # Given two environments and two invocations that only return once both have arrived
    pool = pool_of("rendezvous", 2)
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    answers: list[dict[str, Any]] = []

    def call() -> None:
        answers.append(pool.invoke({"directory": str(meeting), "expected": 2}))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then they met: they ran at the same time, in two different processes
    assert [answer["met"] for answer in answers] == [2, 2]
    assert answers[0]["pid"] != answers[1]["pid"]


def test_an_environment_keeps_its_module_state_between_invocations(pool_of: Any) -> None:
    pool = pool_of("remember", 1)
    first = pool.invoke({"name": "a"})
    second = pool.invoke({"name": "b"})
    assert second["pid"] == first["pid"]
    assert second["seen"] == ["a", "b"]
    assert second["function"] == "test-function"


def test_a_handler_error_fails_the_invocation_under_its_own_name_and_the_environment_lives_on(
    pool_of: Any,
) -> None:
    pool = pool_of("fail", 1)
    before = pool.invoke({})
    with pytest.raises(InvocationFailed) as raised:
        pool.invoke({"fail": True})
    assert type(raised.value).__name__ == "KeyError"
    assert "no such thing" in str(raised.value)
    assert pool.invoke({})["pid"] == before["pid"]


def test_an_invocation_past_the_timeout_fails_and_a_new_environment_takes_over(
    pool_of: Any,
) -> None:
    pool = pool_of("sleep", 1, timeout_seconds=0.2)
    first = pool.invoke({"seconds": 0})
    with pytest.raises(InvocationFailed, match=r"Task timed out after 0\.20 seconds"):
        pool.invoke({"seconds": 30})
    assert pool.invoke({"seconds": 0})["pid"] != first["pid"]


def test_a_replacement_that_fails_its_init_fails_the_waiting_invocation(
    pool_of: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pool whose only environment is lost to a timeout, and an init that now fails
    marker = tmp_path / "broken"
    monkeypatch.setenv("TEST_ENVIRONMENT_BROKEN_IF", str(marker))
    pool = pool_of("sleep", 1, timeout_seconds=0.2)
    with pytest.raises(InvocationFailed, match="timed out"):
        pool.invoke({"seconds": 30})
    marker.touch()
    # Then the next invocation fails with the init error instead of waiting for ever
    with pytest.raises(InvocationFailed, match="died starting"):
        pool.invoke({"seconds": 0})
    # And once the deployment is fixed, a new environment serves again
    marker.unlink()
    assert "pid" in pool.invoke({"seconds": 0})


def test_a_handler_that_cannot_be_imported_is_a_start_error(tmp_path: Path) -> None:
    pool = ExecutionEnvironments(
        spec("no_such_handler"), log_path=tmp_path / "function.log", environments=1
    )
    with pytest.raises(InvocationFailed, match="died starting"):
        pool.start()
    assert "AttributeError" in (tmp_path / "function.log").read_text()


def test_the_functions_own_variables_reach_its_handler_over_the_pools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARED_SETTING", "from the pool")
    monkeypatch.setenv("OWN_SETTING", "from the pool")
    pool = ExecutionEnvironments(
        FunctionSpec(
            handler=f"{HANDLERS}.variable",
            function_name="test-function",
            timeout_seconds=10.0,
            memory_mb=128,
            environment={"OWN_SETTING": "the function's"},
        ),
        log_path=tmp_path / "function.log",
        environments=1,
    )
    pool.start()
    try:
        assert pool.invoke({"name": "OWN_SETTING"}) == {"value": "the function's"}
        assert pool.invoke({"name": "SHARED_SETTING"}) == {"value": "from the pool"}
    finally:
        pool.close()
