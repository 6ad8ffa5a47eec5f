"""The cutover state file and the lock that serialises state-changing commands.

`var/state.json` is the one record of where the cutover stands (phase, mode, weight, history,
gates, processes), shared by the CLI, the gateway and the console. It is versioned and always
replaced atomically, so a reader never sees half a file. `var/cutover.lock` is held by at most one
state-changing command; a lock whose holder died is taken over, a live one is refused with the
holder's name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from market.calendar import iso_ms

STATE_VERSION = 1

Outcome = Literal["done", "failed", "refused", "interrupted", "error"]

# Phases of the early commands, in order; later commands add theirs. A command only moves the
# phase forward through this list, so re-running `setup` never rewinds a cutover in progress.
EARLY_PHASES = ("new", "setup", "simple", "db")


class StateError(Exception):
    """The state file cannot be used as it is; the message says why and what to do."""


class StateVersionError(StateError):
    """The state file was written by a newer version of this project."""


class HistoryEntry(msgspec.Struct, frozen=True):
    """One command's outcome, appended when the command ends."""

    command: str
    outcome: Outcome
    at: str
    detail: str = ""


class CutoverState(msgspec.Struct, kw_only=True):
    """Where the cutover stands. `mode` is which backend serves; `weight` is prod's share in %."""

    version: int = STATE_VERSION
    phase: str = "new"
    mode: str = "mock"
    weight: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    history: list[HistoryEntry] = msgspec.field(default_factory=list)
    gates: dict[str, Any] = msgspec.field(default_factory=dict)
    processes: dict[str, Any] = msgspec.field(default_factory=dict)
    # The canary controller's record (ops/gateway/canary.py): status, step, weight, settings and
    # each interval's analysis. Empty until a canary starts; older files without it still load.
    canary: dict[str, Any] = msgspec.field(default_factory=dict)

    def advance(self, phase: str) -> None:
        """Move to `phase` if it lies ahead of the current early phase; never move back."""
        if self.phase not in EARLY_PHASES:
            return
        if phase not in EARLY_PHASES or EARLY_PHASES.index(phase) > EARLY_PHASES.index(self.phase):
            self.phase = phase


Migration = Callable[[dict[str, Any]], dict[str, Any]]

# MIGRATIONS[n] turns a version-n document into a version-(n+1) one. Add one with every bump of
# STATE_VERSION, so that a cutover in progress survives an upgrade of the code.
MIGRATIONS: dict[int, Migration] = {}


def now_iso() -> str:
    return iso_ms(time.time())


def gate_record(passed: bool, detail: str, **figures: Any) -> dict[str, Any]:
    """A gate's verdict as the state records it: passed, when, why, and its figures."""
    return {"passed": passed, "at": now_iso(), "detail": detail, **figures}


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that readers see the old file or the new one, never a mix.

    Written to a temporary file in the same directory, flushed to disk, then renamed over the
    target; the directory is synced too so the rename survives a power cut.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def migrate(
    document: dict[str, Any],
    *,
    current: int = STATE_VERSION,
    migrations: Mapping[int, Migration] = MIGRATIONS,
    source: str = "state file",
) -> dict[str, Any]:
    """Bring a decoded state document up to `current`, one version at a time."""
    version = document.get("version")
    if not isinstance(version, int) or version < 0:
        raise StateError(
            f"{source} has no valid version ({version!r}); move it aside to start over"
        )
    if version > current:
        raise StateVersionError(
            f"{source} is version {version}, written by a newer version of this project; this "
            f"code reads up to version {current}. Update the code (git pull) rather than edit it."
        )
    while version < current:
        step = migrations.get(version)
        if step is None:
            raise StateError(
                f"{source} is version {version} and no migration to {version + 1} exists"
            )
        document = step(dict(document))
        version += 1
        document["version"] = version
    return document


class StateStore:
    """Reads and replaces the state file. A missing file reads as a fresh state."""

    def __init__(
        self,
        path: Path,
        *,
        current: int = STATE_VERSION,
        migrations: Mapping[int, Migration] = MIGRATIONS,
    ) -> None:
        self.path = path
        self._current = current
        self._migrations = migrations

    def load(self) -> CutoverState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return CutoverState(version=self._current)
        try:
            document = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise StateError(
                f"{self.path} is not valid JSON ({exc}); move it aside to start over"
            ) from None
        if not isinstance(document, dict):
            raise StateError(
                f"{self.path} does not hold a JSON object; move it aside to start over"
            )
        document = migrate(
            document, current=self._current, migrations=self._migrations, source=str(self.path)
        )
        try:
            return msgspec.convert(document, CutoverState)
        except msgspec.ValidationError as exc:
            raise StateError(f"{self.path} is malformed: {exc}") from None

    def save(self, state: CutoverState) -> None:
        state.version = self._current
        write_atomic(self.path, msgspec.json.format(msgspec.json.encode(state)) + b"\n")

    def update(self, change: Callable[[CutoverState], None]) -> CutoverState:
        """Load, apply `change`, save; returns the saved state. Callers hold the lock.

        The gateway writes too (routing, the canary's record) without the command lock, so the
        read-modify-write itself is serialised on the directory: no writer loses another's change.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
            state = self.load()
            change(state)
            self.save(state)
        finally:
            os.close(dir_fd)
        return state

    def record(self, command: str, outcome: Outcome, detail: str = "") -> CutoverState:
        """Append a command's outcome to the history."""
        entry = HistoryEntry(command=command, outcome=outcome, at=now_iso(), detail=detail)
        return self.update(lambda state: state.history.append(entry))


_HAS_PROC = Path("/proc/self/stat").exists()


def process_start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if unknown or gone.

    Stored next to a pid so that a pid reused by an unrelated process is not taken for ours.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether `pid` runs (not a zombie) and, when `start_ticks` is given, is the same process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not _HAS_PROC:
        return True  # no /proc on this system: the signal check is all there is
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    return start_ticks is None or process_start_ticks(pid) == start_ticks


class LockInfo(msgspec.Struct, frozen=True):
    """Who holds the cutover lock."""

    pid: int
    command: str
    started_at: str
    proc_start: int | None = None

    def describe(self) -> str:
        return f"`{self.command}` (pid {self.pid}, since {self.started_at})"


class LockHeldError(Exception):
    """Another live command holds the lock."""

    def __init__(self, holder: LockInfo, path: Path) -> None:
        super().__init__(
            f"another command holds the cutover lock: {holder.describe()}. Wait for it to end "
            f"(./start.sh status shows progress), or stop it; the lock is {path}."
        )
        self.holder = holder


class CutoverLock:
    """`var/cutover.lock`: created with O_EXCL, holding the holder's pid, command and start time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.taken_over: LockInfo | None = None
        self._mine: LockInfo | None = None

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        # Acquirers serialise on the directory, so deciding that a lock is stale and removing
        # it cannot race with another acquirer creating a fresh one in between.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(dir_fd)

    def holder(self) -> LockInfo | None:
        """The recorded holder, or None when there is no lock or it is unreadable."""
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=LockInfo)
        except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
            return None

    def live_holder(self) -> LockInfo | None:
        holder = self.holder()
        if holder is not None and pid_alive(holder.pid, holder.proc_start):
            return holder
        return None

    def acquire(self, command: str) -> LockInfo:
        """Take the lock for `command`; raises LockHeldError naming a live holder."""
        me = LockInfo(
            pid=os.getpid(),
            command=command,
            started_at=now_iso(),
            proc_start=process_start_ticks(os.getpid()),
        )
        with self._guard():
            for _ in range(2):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    holder = self.holder()
                    if holder is not None and pid_alive(holder.pid, holder.proc_start):
                        raise LockHeldError(holder, self.path) from None
                    # Dead holder, or a file left half-written by a crash: take it over.
                    self.taken_over = holder
                    self.path.unlink(missing_ok=True)
                    continue
                with os.fdopen(fd, "wb") as handle:
                    handle.write(msgspec.json.encode(me))
                    handle.flush()
                    os.fsync(handle.fileno())
                self._mine = me
                return me
        raise StateError(f"could not create {self.path}")

    def release(self) -> None:
        """Remove the lock if this process still holds it."""
        if self._mine is None:
            return
        with self._guard():
            holder = self.holder()
            if holder is not None and holder.pid == self._mine.pid:
                self.path.unlink(missing_ok=True)
        self._mine = None

    @contextlib.contextmanager
    def held(self, command: str) -> Iterator[LockInfo]:
        """Hold the lock for the duration of a `with` block."""
        info = self.acquire(command)
        try:
            yield info
        finally:
            self.release()
