"""The platform's state in SQLite: users (salted PBKDF2 hashes), bearer tokens (hashed) and jobs.

Everything the server knows lives here, so users, sessions and jobs survive a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PBKDF2_ITERATIONS = 200_000
TOKEN_TTL_S = 12 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    email TEXT PRIMARY KEY,
    salt BLOB NOT NULL,
    password_hash BLOB NOT NULL,
    iterations INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY,
    email TEXT NOT NULL REFERENCES users(email),
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES users(email),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    local_id TEXT,
    num_rounds INTEGER NOT NULL,
    sites TEXT NOT NULL,
    request TEXT NOT NULL,
    idempotency_key TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs(owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
"""


@dataclass(frozen=True)
class JobRow:
    id: str
    owner: str
    name: str
    status: str
    error: str | None
    local_id: str | None
    num_rounds: int
    sites: list[str]
    request: dict[str, Any]
    idempotency_key: str | None
    created_at: float
    updated_at: float

    def public(self) -> dict[str, Any]:
        """What the REST API shows of a job (never the owner's secrets: there are none in a row)."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "error": self.error,
            "num_rounds": self.num_rounds,
            "sites": self.sites,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _hash_password(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8", "surrogatepass"), salt, iterations)


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Store:
    """A small thread-safe wrapper over one SQLite file."""

    def __init__(self, path: str | Path, token_ttl_s: float = TOKEN_TTL_S) -> None:
        self.path = Path(path)
        self.token_ttl_s = token_ttl_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- users ------------------------------------------------------------------------
    def add_user(self, email: str, password: str) -> bool:
        """Create the user, or set a new password for an existing one (ending its sessions).

        Returns False when the user already has exactly this password (nothing changes).
        """
        if "@" not in email:
            raise ValueError(f"{email!r} is not an email address")
        if len(password) < 8:
            raise ValueError("the password must have at least 8 characters")
        if email.lower() in self.users() and self.check_password(email, password):
            return False
        salt = secrets.token_bytes(16)
        digest = _hash_password(password, salt, PBKDF2_ITERATIONS)
        with self._lock:
            self._db.execute(
                "INSERT INTO users(email, salt, password_hash, iterations, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(email) DO UPDATE SET salt=excluded.salt, password_hash=excluded.password_hash, "
                "iterations=excluded.iterations",
                (email.lower(), salt, digest, PBKDF2_ITERATIONS, time.time()),
            )
            self._db.execute("DELETE FROM tokens WHERE email = ?", (email.lower(),))
        return True

    def check_password(self, email: str, password: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT * FROM users WHERE email = ?", (email.lower(),)).fetchone()
        if row is None:
            _hash_password(password, b"0" * 16, PBKDF2_ITERATIONS)  # same cost: no user enumeration by timing
            return False
        return hmac.compare_digest(_hash_password(password, row["salt"], row["iterations"]), row["password_hash"])

    def users(self) -> list[str]:
        with self._lock:
            return [r["email"] for r in self._db.execute("SELECT email FROM users ORDER BY email")]

    # -- tokens -----------------------------------------------------------------------
    def issue_token(self, email: str, ttl_s: float | None = None) -> tuple[str, float]:
        """A new bearer token for ``email``, valid ``ttl_s`` seconds (default: the store's ``token_ttl_s``)."""
        token = secrets.token_urlsafe(32)
        expires_at = time.time() + (self.token_ttl_s if ttl_s is None else ttl_s)
        with self._lock:
            self._db.execute("DELETE FROM tokens WHERE expires_at < ?", (time.time(),))
            self._db.execute(
                "INSERT INTO tokens(token_sha256, email, expires_at) VALUES (?, ?, ?)",
                (_token_digest(token), email.lower(), expires_at),
            )
        return token, expires_at

    def user_for_token(self, token: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT email, expires_at FROM tokens WHERE token_sha256 = ?", (_token_digest(token),)
            ).fetchone()
        if row is None or row["expires_at"] < time.time():
            return None
        return row["email"]

    def revoke_token(self, token: str) -> bool:
        """End the session of ``token`` (logout); False when it was not a live token."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM tokens WHERE token_sha256 = ?", (_token_digest(token),))
        return cursor.rowcount > 0

    # -- jobs -------------------------------------------------------------------------
    def create_job(
        self,
        owner: str,
        name: str,
        num_rounds: int,
        sites: list[str],
        request: dict[str, Any],
        idempotency_key: str | None,
        status: str,
    ) -> tuple[JobRow, bool]:
        """Insert a job; with an idempotency key already used by ``owner``, return that job instead.

        Returns ``(job, created)``.
        """
        now = time.time()
        job_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            if idempotency_key:
                existing = self._job_by_key(owner, idempotency_key)
                if existing is not None:
                    return existing, False
            self._db.execute(
                "INSERT INTO jobs(id, owner, name, status, error, local_id, num_rounds, sites, request, "
                "idempotency_key, created_at, updated_at) VALUES (?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    owner.lower(),
                    name,
                    status,
                    num_rounds,
                    json.dumps(sites),
                    json.dumps(request, sort_keys=True),
                    idempotency_key,
                    now,
                    now,
                ),
            )
            row = self.job(job_id)
        assert row is not None
        return row, True

    def _job_by_key(self, owner: str, key: str) -> JobRow | None:
        row = self._db.execute(
            "SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?", (owner.lower(), key)
        ).fetchone()
        return _job_row(row) if row is not None else None

    def job(self, job_id: str) -> JobRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job_row(row) if row is not None else None

    def jobs_with_status(self, *statuses: str) -> list[JobRow]:
        """All jobs in one of ``statuses``, oldest first (the queue order)."""
        marks = ", ".join("?" for _ in statuses)
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY created_at, rowid", statuses
            ).fetchall()
        return [_job_row(r) for r in rows]

    def jobs(self, owner: str | None = None) -> list[JobRow]:
        with self._lock:
            if owner is None:
                rows = self._db.execute("SELECT * FROM jobs ORDER BY created_at").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM jobs WHERE owner = ? ORDER BY created_at DESC", (owner.lower(),)
                ).fetchall()
        return [_job_row(r) for r in rows]

    def transition(self, job_id: str, old: str, new: str) -> bool:
        """Set the job's status to ``new`` only if it is still ``old`` (so an abort is never overwritten)."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
                (new, time.time(), job_id, old),
            )
        return cursor.rowcount > 0

    def update_job(self, job_id: str, **fields: Any) -> None:
        allowed = {"status", "error", "local_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",
                (*fields.values(), time.time(), job_id),
            )


def _job_row(row: sqlite3.Row) -> JobRow:
    return JobRow(
        id=row["id"],
        owner=row["owner"],
        name=row["name"],
        status=row["status"],
        error=row["error"],
        local_id=row["local_id"],
        num_rounds=row["num_rounds"],
        sites=json.loads(row["sites"]),
        request=json.loads(row["request"]),
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
