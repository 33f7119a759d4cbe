"""Settings: the only reader of the environment and of the config file.

Precedence, lowest first: built-in defaults, the TOML config file (``--config FILE`` or
``CARGOHOLD_CONFIG``), ``CARGOHOLD_<KEY>`` environment variables, command-line options.
Every key is listed in ``Settings``; an unknown key in the file or the environment is an
error, so a typo never silently falls back to a default.

Example ``cargohold.toml``::

    data_dir = "/var/lib/cargohold"
    listen = "0.0.0.0:5000"
    database = "postgres://cargohold:secret@db.internal:5432/cargohold"
    blob_store = "s3"
    s3_endpoint = "minio.internal:9000"
    s3_bucket = "cargohold"
    s3_access_key = "..."
    s3_secret_key = "..."
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cargohold.domain.errors import InvalidInput
from cargohold.domain.expiration import parse_duration

ENV_PREFIX = "CARGOHOLD_"


class ConfigError(Exception):
    """Bad configuration; the message is one line meant for the operator."""


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    def __repr__(self) -> str:  # NOTE: never print the password
        return (
            f"PostgresSettings(host={self.host!r}, port={self.port}, user={self.user!r}, "
            f"dbname={self.dbname!r})"
        )


# PERF: one process serves Python on one core at a time (the GIL). Measured on 2 cores
# (docs/benchmarks.md): 16 concurrent pushers ran at 0.78x the reference with 1 worker,
# 0.95-1.04x with 2; manifest GETs at 2.0x and 3.8x. Not measured beyond 2: SQLite
# takes one writer at a time, so the default stops at 4; --workers asks for more.
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """One worker per CPU this process may run on, at most ``MAX_DEFAULT_WORKERS``. The
    CPUs are its affinity (as ``taskset`` or a cgroup cpuset limit them); a CPU quota
    (``cpu.max``, ``docker --cpus``) is not seen: give ``--workers`` under one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_WORKERS))


@dataclass(frozen=True)
class Settings:
    """Everything cargohold can be told. Field names are the config keys."""

    data_dir: Path = Path("./cargohold-data")
    listen: str = "127.0.0.1:5000"
    # "sqlite" (embedded, files under data_dir) or a postgres:// URL.
    database: str = field(default="sqlite", repr=False)  # the URL may hold a password
    # "filesystem" (under data_dir/blobs) or "s3".
    blob_store: str = "filesystem"
    s3_endpoint: str = ""
    s3_bucket: str = "cargohold"
    s3_access_key: str = field(default="", repr=False)
    s3_secret_key: str = field(default="", repr=False)
    s3_secure: bool = False
    s3_region: str = ""
    s3_prefix: str = ""
    # base64 of a 16/24/32-byte AES key; enables AES-GCM over stored event state.
    cipher_key: str = field(default="", repr=False)
    # Bytes; waitress rejects larger request bodies. Default 64 GiB (multi-GiB layers).
    max_request_body_size: int = 64 * 1024**3
    # Request threads per worker for uploads, blob downloads and writes: each holds its
    # thread for as long as its client sends or reads.
    threads: int = 8
    # Threads per worker for small reads (GET/HEAD of manifests, tags, catalog, blob
    # HEAD): they never wait on a client, and more threads only fight over the GIL
    # (PERF: 16 connections of manifest GETs on 2 cores: 1 worker 535-693 req/s with 1
    # read thread, 212 with 2, 360 with 4; 2 workers 2,914 with 1, 2,502 with 2).
    read_threads: int = 1
    # Answer the smallest reads (manifest GET/HEAD, blob HEAD, tags/list, /v2/) on
    # waitress's event-loop thread, without a thread handoff (PERF: about half the CPU
    # per manifest GET; see http/server/inline_reads.py). Only with SQLite and filesystem blobs,
    # whose reads never wait on a network; ignored with PostgreSQL or S3.
    inline_reads: bool = True
    # Processes sharing the listening socket (one waitress process is bound by the GIL):
    # one per CPU this process may run on, at most MAX_DEFAULT_WORKERS.
    workers: int = field(default_factory=default_workers)
    # Snapshot a repository every N events, so a repository with 50k tags loads fast.
    snapshot_interval: int = 200
    # Which missing references a pushed manifest may have: "strict" (none), "index" (an
    # index may name children never pushed, as in partial mirrors) or "all" (image
    # layers too). The config blob is always required.
    sparse_manifests: str = "index"
    # Abandoned chunked uploads are removed after this many seconds.
    upload_expiry_seconds: int = 24 * 3600
    # The tag time machine: the window (how long a past tag stays restorable) of a
    # namespace that set none, and the windows an admin may choose (Quay's
    # DEFAULT_TAG_EXPIRATION and TAG_EXPIRATION_OPTIONS), as durations like "2w".
    default_tag_expiration: str = "2w"
    tag_expiration_options: str = "0s,1d,1w,2w,4w"
    # Pulls and logins are buffered in memory and written to the audit log this often
    # (or at 500 waiting), and at a clean shutdown.
    access_log_flush_seconds: int = 1
    # Access control on /v2. With ``auth`` off every caller may push and pull anything,
    # anonymously (a throwaway cache or CI mirror). /api/v1 always authenticates.
    auth: bool = True
    # The ``service`` of registry tokens (their audience); clients echo it from the
    # challenge. Every node behind one name must use the same value.
    auth_service: str = "cargohold"
    token_ttl_seconds: int = 300
    # A PEM P-256 key to sign registry tokens with (shared by every node); empty means
    # ``<data_dir>/signing-key.pem``, generated on first start (encrypted with cipher_key).
    signing_key_file: str = ""
    # The key that seals mirror and proxy-cache upstream passwords in the log (32 bytes,
    # JSON, shared by every node); empty means ``<data_dir>/mirror-key``, generated on
    # first start (sealed under cipher_key when there is one).
    mirror_key_file: str = ""
    # Repository mirrors are synced by a worker inside ``serve`` (off: only
    # ``cargohold mirror run-once`` syncs them).
    mirror_worker: bool = True
    # How often the mirror worker looks for due mirrors, in seconds.
    mirror_poll_seconds: int = 30
    # The first start's superuser ``admin`` gets this password; empty: one is generated
    # and printed once.
    admin_password: str = field(default="", repr=False)
    # Geo-replication (docs/geo-replication.md): the shared secret a peer site presents
    # to read this site's log (/replication/v1/log); empty: the log is served to no one.
    peer_token: str = field(default="", repr=False)
    # This site's name, for people (``site status``, the sites endpoint, each peer's
    # view of it); empty: its site id stands for it.
    site_name: str = ""
    # The geo peers this site replicates from: their base URLs, comma-separated (a list
    # in the config file; ``--peer URL``, repeated, on the command line). Each is read
    # with ``peer_token``, which every peer shares.
    peers: str = ""
    # A pull of a blob that a peer's events named and this site does not hold yet:
    # ``proxy`` streams it from the peer (storing it here as it passes); ``redirect``
    # answers 307 to the peer's signed, short-lived URL of it.
    geo_missing_blobs: str = "proxy"
    # Serve the registry as it stood at this moment, read-only (``serve --as-of``): an
    # ISO 8601 date or time (UTC unless it names an offset), or ``@`` + epoch seconds.
    as_of: str = ""

    @property
    def host(self) -> str:
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]

    @property
    def uses_postgres(self) -> bool:
        return self.database != "sqlite"

    @property
    def postgres(self) -> PostgresSettings:
        return _parse_postgres_url(self.database)

    @property
    def peer_urls(self) -> tuple[str, ...]:
        """``peers`` as a tuple of base URLs (no trailing slash), in the order given."""
        return tuple(u.strip().rstrip("/") for u in self.peers.split(",") if u.strip())

    @property
    def as_of_ms(self) -> int | None:
        """``as_of`` in epoch milliseconds, or ``None`` when serving the live registry."""
        return parse_instant(self.as_of) if self.as_of else None


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build ``Settings`` from the file, the environment and explicit overrides.

    Raises ``ConfigError`` (one line) for an unreadable file, an unknown key or a value
    of the wrong type or shape.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        values.update(_read_file(Path(path)))
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting in environment: {key}")
        values[name] = raw
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    return _build(values)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    for key in data:
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r} in config file {path}")
    return data


def _build(values: Mapping[str, Any]) -> Settings:
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        kwargs[name] = _coerce(name, value)
    settings = Settings(**kwargs)
    _validate(settings)
    return settings


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELDS[name].type
    if name == "peers" and isinstance(value, list | tuple):  # the file's list of URLs
        value = ",".join(str(v) for v in value)
    try:
        if kind == "Path":
            return Path(str(value))
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r} must be a {kind}, not {value!r}") from None


def tag_expiration_options(s: Settings) -> tuple[timedelta, ...]:
    """``tag_expiration_options`` parsed (``ConfigError`` for a bad entry)."""
    try:
        return tuple(parse_duration(p) for p in s.tag_expiration_options.split(","))
    except InvalidInput as e:
        raise ConfigError(f"setting 'tag_expiration_options': {e}") from None


def default_tag_expiration(s: Settings) -> timedelta:
    try:
        return parse_duration(s.default_tag_expiration)
    except InvalidInput as e:
        raise ConfigError(f"setting 'default_tag_expiration': {e}") from None


def _check_tag_expiration(s: Settings) -> None:
    if default_tag_expiration(s) not in tag_expiration_options(s):
        raise ConfigError("setting 'default_tag_expiration' must be one of tag_expiration_options")


def _validate(s: Settings) -> None:
    _split_listen(s.listen)
    if s.uses_postgres:
        s.postgres  # noqa: B018 - parses, raising ConfigError on a bad URL
    if s.sparse_manifests not in {"strict", "index", "all"}:
        raise ConfigError(
            f"sparse_manifests must be 'strict', 'index' or 'all', not {s.sparse_manifests!r}"
        )
    _check_tag_expiration(s)
    if s.blob_store not in {"filesystem", "s3"}:
        raise ConfigError(f"blob_store must be 'filesystem' or 's3', not {s.blob_store!r}")
    if s.blob_store == "s3" and not s.s3_endpoint:
        raise ConfigError("blob_store is 's3' but s3_endpoint is not set")
    if not s.auth_service or any(c in s.auth_service for c in '"\\\r\n'):
        raise ConfigError("auth_service must be a non-empty name without quotes")
    for name in (
        "threads",
        "read_threads",
        "workers",
        "snapshot_interval",
        "upload_expiry_seconds",
        "token_ttl_seconds",
        "access_log_flush_seconds",
    ):
        if getattr(s, name) < 1:
            raise ConfigError(f"setting {name!r} must be at least 1")
    if s.max_request_body_size < 1:
        raise ConfigError("setting 'max_request_body_size' must be positive")
    if s.as_of:
        s.as_of_ms  # noqa: B018 - parses, raising ConfigError on an unclear moment
    _check_peers(s)


#: The shortest ``peer_token``: it is the one secret between sites.
MIN_PEER_TOKEN = 16


def _check_peers(s: Settings) -> None:
    if s.peer_token and len(s.peer_token) < MIN_PEER_TOKEN:
        raise ConfigError(f"setting 'peer_token' must be at least {MIN_PEER_TOKEN} characters")
    urls = s.peer_urls
    if urls and not s.peer_token:
        raise ConfigError("setting 'peers' needs 'peer_token' (the secret every peer shares)")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query:
            raise ConfigError(f"setting 'peers': {url[:100]!r} is not an http(s)://host:port URL")
    if s.geo_missing_blobs not in {"proxy", "redirect"}:
        raise ConfigError(
            f"geo_missing_blobs must be 'proxy' or 'redirect', not {s.geo_missing_blobs!r}"
        )
    if len(set(urls)) != len(urls):
        raise ConfigError("setting 'peers' names a peer twice")
    if any(c in s.site_name for c in "\r\n\t") or len(s.site_name) > 100:
        raise ConfigError("setting 'site_name' must be one line of at most 100 characters")


def parse_instant(text: str) -> int:
    """A moment given by an operator, in epoch milliseconds (``ConfigError`` if unclear).

    Accepted: ISO 8601 dates and times (``2026-11-24``, ``2026-11-24T15:00``,
    ``2026-11-24 15:00:00.250+01:00``, ``...Z``), read as UTC unless they carry an
    offset (a date alone is its first moment, 00:00 UTC); or ``@`` and epoch seconds
    (``@1795532400``, fractions allowed).
    """
    raw = text.strip()
    try:
        if raw.startswith("@"):
            return round(float(raw[1:]) * 1000)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"not a moment: {text[:60]!r} (use an ISO 8601 date or time such as "
            "2026-11-24T15:00:00Z, or @ and epoch seconds)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen must be HOST:PORT, not {listen!r}")
    return host.strip("[]"), int(port)


def _parse_postgres_url(url: str) -> PostgresSettings:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ConfigError("database must be 'sqlite' or a postgres://user:pass@host:port/db URL")
    try:
        port = parts.port or 5432
    except ValueError:
        raise ConfigError("database URL has an invalid port") from None
    dbname = parts.path.lstrip("/")
    if not parts.hostname or not parts.username or not dbname:
        raise ConfigError("database URL needs a user, a host and a database name")
    return PostgresSettings(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        dbname=unquote(dbname),
    )
