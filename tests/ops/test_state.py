"""The cutover state file (atomic, versioned) and the lock that serialises commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ops.settings import PROJECT_ROOT
from ops.state import (
    CutoverLock,
    CutoverState,
    LockHeldError,
    LockInfo,
    StateError,
    StateStore,
    StateVersionError,
    process_start_ticks,
    write_atomic,
)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_missing_state_file_reads_as_a_fresh_cutover(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.json").load()
    assert (state.version, state.phase, state.mode, state.weight) == (1, "new", "mock", 0)
    assert state.history == []


def test_saved_state_reads_back_with_its_history(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "var" / "state.json")
    store.update(lambda s: s.advance("setup"))
    store.record("setup", "done", "wrote .env")
    store.record("simple", "failed", "mock unhealthy")

    document = json.loads((tmp_path / "var" / "state.json").read_text())
    assert document["version"] == 1
    assert document["phase"] == "setup"
    assert [(h["command"], h["outcome"]) for h in document["history"]] == [
        ("setup", "done"),
        ("simple", "failed"),
    ]
    assert document["history"][0]["at"].endswith("Z")
    assert store.load().history[1].detail == "mock unhealthy"


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b'{"version": 1}\n')

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b'{"version": 1, "phase": "half')
    assert target.read_bytes() == b'{"version": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_write_atomic_sets_the_requested_mode(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    write_atomic(target, b"SECRET_KEY=x\n", mode=0o600)
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_newer_state_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 7, "phase": "canary"}))
    with pytest.raises(StateVersionError, match=r"version 7.*newer.*up to version 1"):
        StateStore(path).load()
    assert json.loads(path.read_text())["version"] == 7  # never rewritten


def test_an_older_state_file_is_migrated_step_by_step(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "phase": "simple", "history": []}))

    def to_v2(doc: dict[str, Any]) -> dict[str, Any]:
        doc["mode"] = "shadow"
        return doc

    state = StateStore(path, current=2, migrations={1: to_v2}).load()
    assert (state.version, state.phase, state.mode) == (2, "simple", "shadow")

    with pytest.raises(StateError, match="no migration to 2"):
        StateStore(path, current=2, migrations={}).load()


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"phase": "new"}', b'{"version": 1, "weight": 250}'],
    ids=["not-json", "not-an-object", "no-version", "weight-out-of-range"],
)
def test_a_damaged_state_file_is_an_error_not_a_fresh_start(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateError):
        StateStore(path).load()
    assert path.read_bytes() == content


def test_the_phase_only_moves_forward() -> None:
    state = CutoverState()
    state.advance("simple")
    state.advance("setup")
    assert state.phase == "simple"
    state.phase = "canary"  # a later phase, owned by a later command
    state.advance("setup")
    assert state.phase == "canary"


def test_the_lock_names_its_holder_to_a_second_command(tmp_path: Path) -> None:
    path = tmp_path / "cutover.lock"
    first = CutoverLock(path)
    first.acquire("shadow")
    with pytest.raises(LockHeldError, match=rf"`shadow` \(pid {os.getpid()}") as held:
        CutoverLock(path).acquire("simple")
    assert held.value.holder.command == "shadow"
    first.release()
    assert not path.exists()
    with CutoverLock(path).held("simple") as info:
        assert info.command == "simple"
        assert json.loads(path.read_text())["command"] == "simple"
    assert not path.exists()


def test_a_lock_held_by_another_live_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cutover.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from ops.state import CutoverLock
                CutoverLock(Path({str(path)!r})).acquire("canary")
                print("held", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError, match=rf"`canary` \(pid {holder.pid}"):
            CutoverLock(path).acquire("simple")
    finally:
        holder.kill()
        holder.wait()
    # Its holder is gone now: the next command takes the lock over.
    lock = CutoverLock(path)
    lock.acquire("simple")
    assert lock.taken_over is not None
    assert lock.taken_over.command == "canary"
    lock.release()


def test_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "cutover.lock"
    stale = LockInfo(pid=dead_pid(), command="canary", started_at="2026-11-20T10:00:00.000Z")
    path.write_bytes(msgspec.json.encode(stale))
    lock = CutoverLock(path)
    info = lock.acquire("rollback")
    assert lock.taken_over == stale
    assert json.loads(path.read_text())["pid"] == info.pid == os.getpid()
    lock.release()


def test_a_lock_whose_pid_was_recycled_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "cutover.lock"
    ticks = process_start_ticks(os.getpid())
    if ticks is None:
        pytest.skip("no /proc here")
    # Our own pid, but a different start time: a new process that happens to reuse the pid.
    recycled = LockInfo(pid=os.getpid(), command="shadow", started_at="x", proc_start=ticks - 1)
    path.write_bytes(msgspec.json.encode(recycled))
    lock = CutoverLock(path)
    lock.acquire("stop")
    assert lock.taken_over == recycled
    lock.release()


def test_a_half_written_lock_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "cutover.lock"
    path.write_bytes(b'{"pid": 12')
    lock = CutoverLock(path)
    lock.acquire("simple")
    assert lock.holder() is not None
    lock.release()
    assert not path.exists()


def test_release_never_removes_another_holders_lock(tmp_path: Path) -> None:
    path = tmp_path / "cutover.lock"
    mine = CutoverLock(path)
    mine.acquire("simple")
    # Someone removed our lock by hand and another command took it.
    other = LockInfo(pid=1, command="canary", started_at="x")
    path.write_bytes(msgspec.json.encode(other))
    mine.release()
    assert CutoverLock(path).holder() == other
