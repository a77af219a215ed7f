"""The SQLite store: a private file, schema migrations, and locks that die with their holder."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusterdeck.errors import LockedError, NotFoundError
from clusterdeck.state import SqliteStore
from clusterdeck.state.sqlite import MIGRATIONS
from tests.helpers import lock_holder


def test_file_is_private_and_round_trips(tmp_path) -> None:
    store = SqliteStore(tmp_path / "d" / "state.db")
    assert stat.S_IMODE((tmp_path / "d" / "state.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    store.save_environment("e", "aws", {"a": 1})
    store.record_resource("e", "vpc", "vpc", "vpc-123", {"cidr": "10.0.0.0/16"})
    store.set_status("e", "infra-ready", endpoint="https://x:6443")
    again = SqliteStore(tmp_path / "d" / "state.db")
    assert again.environment("e").outputs == {"endpoint": "https://x:6443"}
    assert [r.provider_id for r in again.resources("e")] == ["vpc-123"]
    again.mark_deleted("e", "vpc")
    assert again.resources("e") == []
    assert len(again.resources("e", include_deleted=True)) == 1


def test_events_have_start_and_end(tmp_path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    event = store.start_event("e", "node-1", "os-prep")
    store.end_event(event, "finished", "ok")
    (row,) = store.events("e")
    assert row.kind == "finished" and row.ended_at is not None and row.ended_at >= row.started_at


def test_old_schema_is_migrated(tmp_path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO environments VALUES ('old', 'aws', '{}', 'planned', '{}', 0, 0)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert store.schema_version == len(MIGRATIONS)
    assert store.environment("old") is not None
    store.pin_host_key("old", "h", 22, "ssh-ed25519", "AAAA")
    assert store.host_key("old", "h", 22).public_key == "AAAA"


def test_newer_schema_is_refused(tmp_path) -> None:
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    db.commit()
    db.close()
    with pytest.raises(NotFoundError, match="newer than this clusterdeck"):
        SqliteStore(path)


def test_lock_excludes_a_second_process_and_dies_with_its_holder(tmp_path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).save_environment("e", "aws", {})
    with lock_holder(path, "e") as holder:
        store = SqliteStore(path)
        with (
            pytest.raises(LockedError, match=r"locked by create \(pid \d+"),
            store.lock("e", "create"),
        ):
            pass
        assert store.environment("e") is not None, "reads still work while locked"
        with store.lock("other", "create"):
            pass  # other environments are not affected
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        deadline = time.time() + 5
        while True:
            try:
                with store.lock("e", "create"):
                    break
            except LockedError:
                assert time.time() < deadline, "a killed holder must release the lock"
                time.sleep(0.05)


PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:  # SQLite's shared-lock range of the database file
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 510, 0x40000002)
    print("free")
except OSError:
    print("held")
"""


def _lock_seen_by_another_process(path: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_a_second_store_in_one_process_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    """Opening and closing the database file beside SQLite drops every POSIX lock SQLite
    holds on it in this process; another process's apply then thinks it is alone, and this
    process reads a malformed database (seen when a test re-ran a killed apply)."""
    path = tmp_path / "state.db"
    first = SqliteStore(path)
    first.environment("any")
    assert _lock_seen_by_another_process(path) == "held"
    SqliteStore(path).environment("any")
    assert _lock_seen_by_another_process(path) == "held"


def test_a_killed_applys_journal_is_reported_until_a_later_run_closes_it(tmp_path: Path) -> None:
    from clusterdeck.state import journal

    store = SqliteStore(tmp_path / "state.db")
    store.save_environment("e", "aws", {})
    with journal.recorded_step(store, "e", journal.APPLY_SUBJECT, "plan", "add e-w-1"):
        pass
    assert journal.stopped_apply(store, "e") is None  # ended: nothing to report
    store.start_event("e", journal.APPLY_SUBJECT, "plan", "add e-w-2")  # then killed
    step = store.start_event("e", "e-w-2", "apply add")
    stopped = journal.stopped_apply(store, "e")
    assert stopped is not None and [s.id for s in stopped[1]] == [step]
    journal.close_stopped(store, "e", "a later apply found nothing left")
    assert journal.stopped_apply(store, "e") is None
