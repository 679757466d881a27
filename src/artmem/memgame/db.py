"""Durable storage of a running study: SQLite in WAL mode, one row per played trial.

Each trial is committed (fsync'd: `synchronous=FULL`) before the server answers, so a server
killed at any moment keeps every response it acknowledged, and a participant resumes at the first
position not stored. The design (which image is where) stays in the study's Parquet tables; a
trial row names its image too so the database alone reads as the record of what was shown.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.memgame.study import Study

SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    code TEXT UNIQUE,
    session INTEGER NOT NULL,
    status TEXT NOT NULL,
    level INTEGER NOT NULL,
    next_position INTEGER NOT NULL,
    completion_code TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    participant INTEGER NOT NULL REFERENCES participants(id),
    level INTEGER NOT NULL,
    position INTEGER NOT NULL,
    stim INTEGER NOT NULL,
    pressed INTEGER NOT NULL,
    rt_ms REAL,
    onset_ms REAL NOT NULL,
    offset_ms REAL NOT NULL,
    end_ms REAL NOT NULL,
    input TEXT NOT NULL,
    resumed INTEGER NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (participant, level, position)
);
"""

# participant status: practice -> playing -> finished, or disqualified after a failed practice
ACTIVE = ("practice", "playing")


class TrialRefused(Exception):
    """A trial the participant's state does not allow; `reason` is one of replay, order, level,
    finished, code (the page treats a replay as already stored)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Participant:
    id: int
    code: str | None
    session: int
    status: str
    level: int
    next_position: int
    completion_code: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """The study database. Thread-safe: one connection, writes serialised by a lock (SQLite
    serialises writers anyway; one connection keeps every commit's fsync in order)."""

    def __init__(self, study: Study, path: str | Path | None = None, durable: bool = True):
        """`durable=False` skips the fsync of each commit (simulations that replay thousands of
        trials; a server always runs durable)."""
        self.study = study
        self.path = Path(path) if path is not None else study.db_path
        self._lock = threading.RLock()  # reads too: one connection is never used by two threads at once
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.executescript(SCHEMA)
        first = study.levels[0]
        self._first = (first, "practice" if first == 0 else "playing")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ participants

    def create_participant(self, code: str | None) -> tuple[str, Participant]:
        """A new participant on the least-assigned session. Returns (secret token, participant).

        Raises:
            TrialRefused: the platform code is already taken (by another browser).
        """
        token = secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if code is not None and self._conn.execute(
                        "SELECT 1 FROM participants WHERE code = ?", (code,)).fetchone():
                    raise TrialRefused(f"participant code {code!r} is already playing in another browser",
                                       "code")
                rows = self._conn.execute(
                    "SELECT session, COUNT(*) FROM participants WHERE status != 'disqualified' "
                    "GROUP BY session").fetchall()
                counts = np.zeros(self.study.n_sessions, dtype=np.int64)
                for s, n in rows:
                    counts[s] = n
                session = int(np.argmin(counts))
                level, status = self._first
                cur = self._conn.execute(
                    "INSERT INTO participants (token_hash, code, session, status, level, next_position, "
                    "completion_code, created, updated) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
                    (hash_token(token), code, session, status, level, secrets.token_hex(4).upper(), now, now))
                pid = cur.lastrowid
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return token, self.participant(pid)

    def participant(self, pid: int) -> Participant | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, code, session, status, level, next_position, completion_code "
                "FROM participants WHERE id = ?", (pid,)).fetchone()
        return Participant(*row) if row else None

    def participant_by_token(self, token: str | None) -> Participant | None:
        if not token or len(token) > 128:
            return None
        with self._lock:
            row = self._conn.execute("SELECT id FROM participants WHERE token_hash = ?",
                                     (hash_token(token),)).fetchone()
        return self.participant(row[0]) if row else None

    # ------------------------------------------------------------------ trials

    def record_trial(self, pid: int, level: int, position: int, pressed: bool, rt_ms: float | None,
                     onset_ms: float, offset_ms: float, end_ms: float, input_kind: str,
                     resumed: bool) -> Participant:
        """Store one trial (committed before returning) and advance the participant.

        Raises:
            TrialRefused: a trial already stored (a replay), a finished participant, another level
                than the current one, or a position other than the next one; nothing is stored.
        """
        with self._lock:
            p = self.participant(pid)
            if p is not None and self._conn.execute(
                    "SELECT 1 FROM trials WHERE participant = ? AND level = ? AND position = ?",
                    (pid, level, position)).fetchone():
                raise TrialRefused(f"trial {position} of level {level} is already stored (replay)",
                                   "replay")
            if p is None or p.status not in ACTIVE:
                raise TrialRefused(f"participant is {p.status if p else 'unknown'}; no more trials",
                                   "finished")
            if level != p.level:
                raise TrialRefused(f"level {level} is not the participant's current level {p.level}",
                                   "level")
            if position != p.next_position:
                raise TrialRefused(f"trial {position} of level {level} is out of order; expected "
                                   f"{p.next_position}", "order")
            stims = self.study.level_stims(p.session, level)
            stim = int(stims[position])
            now = time.time()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (pid, level, position, stim, int(pressed), rt_ms, onset_ms, offset_ms, end_ms,
                     input_kind, int(resumed), now))
                status, next_level, next_pos = p.status, level, position + 1
                if next_pos == len(stims):
                    status, next_level, next_pos = self._after_level(p, self.study.level(p.session, level))
                self._conn.execute(
                    "UPDATE participants SET status = ?, level = ?, next_position = ?, updated = ? "
                    "WHERE id = ?", (status, next_level, next_pos, now, pid))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return self.participant(pid)

    def _after_level(self, p: Participant, design: pd.DataFrame) -> tuple[str, int, int]:
        """(status, level, next position) once the last trial of a level is stored."""
        if p.level == 0:  # the practice qualifies (Khosla: a qualification test comes first)
            rows = dict(self._conn.execute(
                "SELECT position, pressed FROM trials WHERE participant = ? AND level = 0", (p.id,)).fetchall())
            repeats = design.loc[design["repeat"] == 1, "position"].tolist()
            found = sum(rows.get(pos, 0) for pos in repeats) / max(len(repeats), 1)
            if found < self.study.config.practice_min_hits:
                return "disqualified", 0, len(design)
        nxt = self.study.next_level(p.level)
        return ("finished", p.level, len(design)) if nxt is None else ("playing", nxt, 0)

    def practice_feedback(self, pid: int) -> dict:
        """Hits and false alarms of the practice level (shown to the participant)."""
        p = self.participant(pid)
        if p is None or not self.study.has_practice:
            return {}
        design = self.study.level(p.session, 0)
        with self._lock:
            rows = dict(self._conn.execute(
                "SELECT position, pressed FROM trials WHERE participant = ? AND level = 0",
                (pid,)).fetchall())
        rep = design["repeat"].to_numpy() == 1
        pos = design["position"].to_numpy()
        pressed = np.array([rows.get(int(q), 0) for q in pos])
        return {"repeats": int(rep.sum()), "found": int(pressed[rep].sum()),
                "false_alarms": int(pressed[~rep].sum())}

    # ------------------------------------------------------------------ reading

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(participants, trials) as stored (the token hashes left out)."""
        with self._lock:
            parts = pd.read_sql_query(
                "SELECT id AS participant_id, code, session, status, level, next_position, "
                "completion_code, created, updated FROM participants ORDER BY id", self._conn)
            trials = pd.read_sql_query(
                "SELECT participant AS participant_id, level, position, stim, pressed, rt_ms, onset_ms, "
                "offset_ms, end_ms, input, resumed, received FROM trials "
                "ORDER BY participant, level, position", self._conn)
        return parts, trials


def read_tables(study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(participants, trials) of a study's database, read while a server may be writing it."""
    from artmem.errors import ArtmemError

    if not study.db_path.is_file():
        raise ArtmemError(f"{study.db_path}: no responses yet (run `artmem memgame serve {study.root}`)")
    store = Store(study)
    try:
        return store.tables()
    finally:
        store.close()
