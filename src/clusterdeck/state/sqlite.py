"""SQLite implementation of the state store: one file, mode 0600, versioned schema.

WAL mode lets ``status`` read while an apply writes; per-environment locks are ``flock`` on
small files beside the database, so a killed process releases its lock by dying. Schema
changes are appended to ``MIGRATIONS``; ``PRAGMA user_version`` says which have run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clusterdeck.errors import LockedError, NotFoundError, UsageError
from clusterdeck.model.records import (
    EnvironmentRecord,
    EventRecord,
    HostKeyRecord,
    ResourceRecord,
)

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE environments (
        name TEXT PRIMARY KEY, provider TEXT NOT NULL, spec TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'planned', outputs TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL, updated_at REAL NOT NULL);
    CREATE TABLE resources (
        environment TEXT NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL,
        provider_id TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL, deleted_at REAL,
        PRIMARY KEY (environment, key));
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, environment TEXT NOT NULL, subject TEXT NOT NULL,
        step TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL, ended_at REAL);
    CREATE INDEX events_by_env ON events (environment, id);
    """,
    # 2: pinned SSH host keys (trust on first use)
    """
    CREATE TABLE host_keys (
        environment TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL,
        key_type TEXT NOT NULL, public_key TEXT NOT NULL, pinned_at REAL NOT NULL,
        PRIMARY KEY (environment, host, port));
    """,
]


def _check_store_path(path: Path) -> None:
    """A store path must be a file or free: refuse a directory (whether a file is SQLite is
    asked of SQLite itself, see :func:`_refuse_other_files`)."""
    if path.is_dir():
        raise UsageError(f"--state {path} is a directory; give a file path, e.g. {path}/state.db")
    if path.parent.exists() and not path.parent.is_dir():
        raise UsageError(f"--state {path}: {path.parent} is not a directory")


def _refuse_other_files(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is not SQLite, before its mode is changed or anything is written.

    Asked through the connection, never by opening the file a second time: closing another
    descriptor of a database file drops the POSIX locks SQLite holds on it in this process
    (SQLite's "how to corrupt your database", section 2.2), and another store object of this
    process may have it open; a killed apply's re-run in the same process then read a
    malformed database."""
    try:
        db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError:
        db.close()
        raise UsageError(f"--state {path} is not a clusterdeck state store (not SQLite)") from None


class SqliteStore:
    """The embedded store. Safe to share between threads of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        _check_store_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._mutex = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=30, check_same_thread=False, isolation_level=None
        )
        _refuse_other_files(self._db, self.path)
        self.path.chmod(0o600)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 30000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.chmod(0o600)
        self._migrate()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                current = self.schema_version
                if current > len(MIGRATIONS):
                    raise NotFoundError(
                        f"state store {self.path} has schema version {current}, newer than this "
                        f"clusterdeck understands ({len(MIGRATIONS)}); upgrade clusterdeck"
                    )
                for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                    for statement in filter(str.strip, script.split(";")):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._mutex:
            return self._db.execute(sql, args)

    # environments -------------------------------------------------------------------------
    def save_environment(self, name: str, provider: str, spec: dict[str, Any]) -> EnvironmentRecord:
        now = time.time()
        self._exec(
            "INSERT INTO environments (name, provider, spec, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET provider = excluded.provider, "
            "spec = excluded.spec, updated_at = excluded.updated_at",
            (name, provider, json.dumps(spec, sort_keys=True), now, now),
        )
        record = self.environment(name)
        assert record is not None
        return record

    def environment(self, name: str) -> EnvironmentRecord | None:
        row = self._exec("SELECT * FROM environments WHERE name = ?", (name,)).fetchone()
        return _environment(row) if row else None

    def environments(self) -> list[EnvironmentRecord]:
        rows = self._exec("SELECT * FROM environments ORDER BY name").fetchall()
        return [_environment(r) for r in rows]

    def set_status(self, name: str, status: str, **outputs: Any) -> None:
        with self._mutex:
            record = self.environment(name)
            if record is None:
                raise NotFoundError(f"no environment named {name!r} in {self.path}")
            merged = {**record.outputs, **outputs}
            self._exec(
                "UPDATE environments SET status = ?, outputs = ?, updated_at = ? WHERE name = ?",
                (status, json.dumps(merged, sort_keys=True), time.time(), name),
            )

    def forget_environment(self, name: str) -> None:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            for table in ("environments", "resources", "events", "host_keys"):
                column = "name" if table == "environments" else "environment"
                self._db.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))  # noqa: S608
            self._db.execute("COMMIT")

    # resources ----------------------------------------------------------------------------
    def record_resource(
        self,
        environment: str,
        key: str,
        kind: str,
        provider_id: str,
        data: dict[str, Any] | None = None,
    ) -> ResourceRecord:
        now = time.time()
        self._exec(
            "INSERT INTO resources (environment, key, kind, provider_id, data, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(environment, key) DO UPDATE SET "
            "kind = excluded.kind, provider_id = excluded.provider_id, data = excluded.data, "
            "deleted_at = NULL",
            (environment, key, kind, provider_id, json.dumps(data or {}, sort_keys=True), now),
        )
        row = self._exec(
            "SELECT * FROM resources WHERE environment = ? AND key = ?", (environment, key)
        ).fetchone()
        return _resource(row)

    def resources(self, environment: str, *, include_deleted: bool = False) -> list[ResourceRecord]:
        sql = "SELECT * FROM resources WHERE environment = ?"
        if not include_deleted:
            sql += " AND deleted_at IS NULL"
        rows = self._exec(sql + " ORDER BY created_at, key", (environment,)).fetchall()
        return [_resource(r) for r in rows]

    def mark_deleted(self, environment: str, key: str) -> None:
        self._exec(
            "UPDATE resources SET deleted_at = ? WHERE environment = ? AND key = ?",
            (time.time(), environment, key),
        )

    # events -------------------------------------------------------------------------------
    def start_event(self, environment: str, subject: str, step: str, message: str = "") -> int:
        cur = self._exec(
            "INSERT INTO events (environment, subject, step, kind, message, "
            "started_at) VALUES (?, ?, ?, 'started', ?, ?)",
            (environment, subject, step, message, time.time()),
        )
        return int(cur.lastrowid or 0)

    def end_event(self, event_id: int, kind: str, message: str = "") -> None:
        self._exec(
            "UPDATE events SET kind = ?, message = ?, ended_at = ? WHERE id = ?",
            (kind, message, time.time(), event_id),
        )

    def events(self, environment: str) -> list[EventRecord]:
        rows = self._exec(
            "SELECT * FROM events WHERE environment = ? ORDER BY id", (environment,)
        ).fetchall()
        return [EventRecord(**dict(r)) for r in rows]

    # host keys ----------------------------------------------------------------------------
    def pin_host_key(
        self, environment: str, host: str, port: int, key_type: str, public_key: str
    ) -> None:
        self._exec(
            "INSERT INTO host_keys VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (environment, host, port, key_type, public_key, time.time()),
        )

    def host_key(self, environment: str, host: str, port: int) -> HostKeyRecord | None:
        row = self._exec(
            "SELECT * FROM host_keys WHERE environment = ? AND host = ? AND port = ?",
            (environment, host, port),
        ).fetchone()
        return HostKeyRecord(**dict(row)) if row else None

    def host_keys(self, environment: str) -> list[HostKeyRecord]:
        rows = self._exec(
            "SELECT * FROM host_keys WHERE environment = ? ORDER BY host, port", (environment,)
        ).fetchall()
        return [HostKeyRecord(**dict(r)) for r in rows]

    def forget_host_key(self, environment: str, host: str, port: int | None = None) -> int:
        """Unpin a host's key (all ports unless one is given); return how many were removed."""
        sql = "DELETE FROM host_keys WHERE environment = ? AND host = ?"
        args: tuple[Any, ...] = (environment, host)
        if port is not None:
            sql += " AND port = ?"
            args += (port,)
        return self._exec(sql, args).rowcount

    # locking ------------------------------------------------------------------------------
    @contextmanager
    def lock(self, environment: str, purpose: str) -> Iterator[None]:
        """Hold the environment's lock; raise LockedError naming the holder if it is taken."""
        lock_dir = self.path.with_name(self.path.name + ".locks")
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(lock_dir / f"{environment}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
                raise LockedError(environment, holder) from None
            info = (
                f"{purpose} (pid {os.getpid()} on {socket.gethostname()}, since "
                f"{time.strftime('%H:%M:%S')})"
            )
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _environment(row: sqlite3.Row) -> EnvironmentRecord:
    data = dict(row)
    data["spec"] = json.loads(data["spec"])
    data["outputs"] = json.loads(data["outputs"])
    return EnvironmentRecord(**data)


def _resource(row: sqlite3.Row) -> ResourceRecord:
    data = dict(row)
    data["data"] = json.loads(data["data"])
    return ResourceRecord(**data)
