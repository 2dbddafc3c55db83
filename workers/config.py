"""Configuration from environment variables, checked once at start-up.

Every variable has one parser here; an invalid value raises `ConfigError`, which the CLI
turns into one line naming the variable and what it accepts (exit code 2). Job-specific
settings (health, certificates, traffic) are read by their job modules with the same
helpers, so they are checked the same way.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from db.problem import Problem
from tasks.redaction import remember

from . import job_selection
from .job_selection import JobSelection

AreaSettings = TypeVar("AreaSettings")


class ConfigError(Problem):
    """An environment variable has a value the workers cannot use."""

    def __init__(self, variable: str, value: str, accepted: str) -> None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        super().__init__(f"{variable}={shown!r} is not valid: expected {accepted}")
        self.variable = variable


def env_str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name, "").strip()
    return value or default


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _range(minimum: float, maximum: float | None, number: str) -> str:
    if maximum is None:
        return f"{number} of at least {_shown(minimum)}"
    return f"{number} from {_shown(minimum)} to {_shown(maximum)}"


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number from `minimum` to `maximum` (inclusive; no upper bound when None)."""
    raw = env_str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(name, raw, _range(minimum, maximum, "a whole number"))
    return value


def env_float(
    env: Mapping[str, str], name: str, default: float, minimum: float = 0.0, maximum: float | None = None
) -> float:
    """A finite number from `minimum` to `maximum` (inclusive); never inf or nan."""
    raw = env_str(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= minimum and (maximum is None or value <= maximum)):
        raise ConfigError(name, raw, _range(minimum, maximum, "a number"))
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env_str(env, name, default)
    if raw.lower() not in choices:
        raise ConfigError(name, raw, "one of " + ", ".join(choices))
    return raw.lower()


# SQLite keeps busy_timeout in a 32-bit int: 2^31 ms or more would silently become 0.
MAX_BUSY_TIMEOUT_MS = 3_600_000

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class QueueConfig:
    kind: str  # "sqlite" or "redis"
    location: str  # a file path, or the Redis URL

    def describe(self) -> str:
        if self.kind == "redis":
            return sa.make_url(self.location).render_as_string(hide_password=True)
        return str(Path(self.location).resolve())


DEFAULT_QUEUE_POLL_S = 5.0


@dataclass(frozen=True)
class Settings:
    database_url: str
    queue: QueueConfig
    backup_dir: Path
    backup_keep: int
    log_level: str
    log_format: str
    busy_timeout_ms: int
    shutdown_timeout_s: float
    queue_poll_s: float = DEFAULT_QUEUE_POLL_S  # PROXYOS_QUEUE_POLL: see consumer.DoorbellWorker
    secret: str | None = field(default=None, repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    jobs: JobSelection = field(default_factory=JobSelection)  # PROXYOS_JOBS
    # `area`'s, parsed once; not an argument, so a `replace`d copy never shares another env's
    _areas: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def log_level_number(self) -> int:
        return getattr(logging, self.log_level.upper())

    def area(self, load: Callable[[Mapping[str, str]], AreaSettings]) -> AreaSettings:
        """An area's settings (`load` of `workers/settings/<area>.py`), read from `env`
        on first use and kept: a job run does not parse them again."""
        try:
            return self._areas[load]
        except KeyError:
            value = self._areas[load] = load(self.env)
            return value


def _sqlite_url(path: Path) -> str:
    """The URL of the file `path` names: `~` expanded, relative to the current directory,
    and `?`, `#` or `%` in the name escaped, so they stay part of the name."""
    return sa.URL.create("sqlite", database=str(path.expanduser().absolute())).render_as_string()


def _database_url(env: Mapping[str, str]) -> tuple[str, Path]:
    raw = env_str(env, "PROXYOS_DATABASE_URL")
    db_path = Path(env_str(env, "PROXYOS_DB_PATH", "./data/proxyos.db")).expanduser()
    if raw is None:
        return _sqlite_url(db_path), db_path.absolute().parent
    try:
        url = sa.make_url(raw)
    except sa.exc.ArgumentError:
        url = None
    accepted = "sqlite:///path/to/proxyos.db or postgresql+psycopg://user@host:5432/dbname"
    if url is None or url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError("PROXYOS_DATABASE_URL", _hide_password(raw), accepted)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError("PROXYOS_DATABASE_URL", raw, "a SQLite file, not memory: " + accepted)
        if url.query:
            raise ConfigError("PROXYOS_DATABASE_URL", raw, "a SQLite file path without ?options "
                              "(write a ? in a file name as %3F, a # as %23, a % as %25)")
        path = Path(url.database).expanduser()
        return _sqlite_url(path), path.absolute().parent
    if url.password:
        remember(url.password)
    return raw, db_path.absolute().parent


def _hide_password(raw: str) -> str:
    try:
        return sa.make_url(raw).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return raw.split("@")[-1]


def _queue(env: Mapping[str, str], data_dir: Path) -> QueueConfig:
    raw = env_str(env, "PROXYOS_QUEUE_URL")
    if raw is None:
        return QueueConfig("sqlite", str(data_dir / "queue.db"))
    accepted = "sqlite:///path/to/queue.db or redis://host:6379/0"
    if raw.startswith("sqlite:///") and len(raw) > len("sqlite:///"):
        return QueueConfig("sqlite", raw[len("sqlite:///"):])
    if raw.startswith(("redis://", "rediss://", "unix://")):
        try:
            url = sa.make_url(raw)
        except sa.exc.ArgumentError:
            raise ConfigError("PROXYOS_QUEUE_URL", _hide_password(raw), accepted) from None
        if url.password:
            remember(url.password)
        return QueueConfig("redis", raw)
    raise ConfigError("PROXYOS_QUEUE_URL", _hide_password(raw), accepted)


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check the core settings; raises ConfigError on the first bad value."""
    env = dict(os.environ if env is None else env)
    database_url, data_dir = _database_url(env)
    secret = env_str(env, "PROXYOS_SECRET")
    remember(secret)
    return Settings(
        database_url=database_url,
        queue=_queue(env, data_dir),
        backup_dir=Path(env_str(env, "PROXYOS_BACKUP_DIR", str(data_dir / "backups"))),
        backup_keep=env_int(env, "PROXYOS_BACKUP_KEEP", 30, minimum=1, maximum=100_000),
        log_level=env_choice(env, "LOG_LEVEL", "info", LOG_LEVELS),
        log_format=env_choice(env, "PROXYOS_LOG_FORMAT", "text", ("text", "json")),
        busy_timeout_ms=env_int(env, "PROXYOS_BUSY_TIMEOUT_MS", 5000, minimum=0, maximum=MAX_BUSY_TIMEOUT_MS),
        shutdown_timeout_s=env_float(env, "PROXYOS_SHUTDOWN_TIMEOUT", 30.0, maximum=86_400.0),
        queue_poll_s=env_float(env, "PROXYOS_QUEUE_POLL", DEFAULT_QUEUE_POLL_S, minimum=0.1, maximum=60.0),
        secret=secret,
        env=env,
        jobs=job_selection.from_env(env),
    )
