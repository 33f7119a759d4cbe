from __future__ import annotations

from pathlib import Path

import pytest

from cargohold import config
from cargohold.config import ConfigError, Settings, load_settings


def test_defaults_are_the_embedded_registry_on_localhost_5000() -> None:
    s = load_settings(environ={})
    assert s.data_dir == Path("./cargohold-data")
    assert (s.host, s.port) == ("127.0.0.1", 5000)
    assert not s.uses_postgres
    assert s.blob_store == "filesystem"
    assert s.max_request_body_size >= 64 * 1024**3


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 2), (3, 3), (4, 4), (64, 4)])
def test_serve_runs_one_worker_per_usable_cpu_up_to_four(
    monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int
) -> None:
    # The CPUs this process may run on (a container's or taskset's), not the machine's.
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.setattr(config.os, "cpu_count", lambda: 128)
    assert load_settings(environ={}).workers == workers
    assert load_settings(environ={"CARGOHOLD_WORKERS": "7"}).workers == 7
    assert load_settings(environ={}, overrides={"workers": 3}).workers == 3


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('listen = "127.0.0.1:6000"\ndata_dir = "/from/file"\nthreads = 3\n')
    env = {"CARGOHOLD_DATA_DIR": "/from/env", "CARGOHOLD_THREADS": "5"}
    s = load_settings(config_file=config, environ=env, overrides={"threads": 7})
    assert s.listen == "127.0.0.1:6000"  # file only
    assert s.data_dir == Path("/from/env")  # env beats file
    assert s.threads == 7  # command line beats env


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('listen = "0.0.0.0:7000"\n')
    assert load_settings(environ={"CARGOHOLD_CONFIG": str(config)}).port == 7000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'blue'\n", "unknown setting 'colour'"),
        ("listen = 'nowhere'\n", "listen must be HOST:PORT"),
        ("threads = 'many'\n", "'threads' must be a int"),
        ("threads = 0\n", "'threads' must be at least 1"),
        ("database = 'mysql://x@y/z'\n", "database must be 'sqlite' or a postgres"),
        ("database = 'postgres://host-only'\n", "needs a user, a host and a database"),
        ("blob_store = 's3'\n", "s3_endpoint is not set"),
        ("blob_store = 'tape'\n", "blob_store must be"),
        ("listen = \n", "not valid TOML"),
    ],
)
def test_bad_config_file_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config, environ={})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_environment_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match="CARGOHOLD_DATADIR"):
        load_settings(environ={"CARGOHOLD_DATADIR": "/x"})


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(config_file="/nonexistent/cargohold.toml", environ={})


def test_postgres_url_is_parsed_and_password_never_shown() -> None:
    s = load_settings(environ={"CARGOHOLD_DATABASE": "postgres://reg:s%40cret@db:6543/cargo"})
    pg = s.postgres
    assert (pg.host, pg.port, pg.user, pg.password, pg.dbname) == (
        "db",
        6543,
        "reg",
        "s@cret",
        "cargo",
    )
    assert "s@cret" not in repr(pg)


def test_secrets_are_not_in_settings_repr() -> None:
    s = Settings(
        s3_secret_key="topsecret",
        cipher_key="a2V5a2V5a2V5a2V5a2V5aw==",
        database="postgres://u:dbpassword@h/d",
    )
    assert "topsecret" not in repr(s)
    assert "dbpassword" not in repr(s)
    assert "a2V5" not in repr(s)
