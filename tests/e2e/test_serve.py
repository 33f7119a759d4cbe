"""The real ``cargohold serve`` process: start, answer, stop; bad configuration."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.server import BASE_ENV, serving
from tests.fixtures.services import free_port


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def test_serve_answers_health_and_the_v2_base(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    with serving("--data-dir", str(data), "--listen", f"127.0.0.1:{port}", cwd=tmp_path) as server:
        url, proc = server.url, server.proc
        assert url == f"http://127.0.0.1:{port}"
        status, _, body = get(url + "/health")
        assert status == 200
        assert json.loads(body)["checks"] == {
            "views": "ok",
            "blobs": "ok",
            "log": "ok",
            "projection": "ok",
        }
        status, headers, body = get(url + "/v2/")
        assert status == 200
        assert headers["docker-distribution-api-version"] == "registry/2.0"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert (data / "events.sqlite").exists() and (data / "views.sqlite").exists()
    assert (data / "site-id").read_text().strip()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_serve_seals_the_audit_chain(tmp_path: Path) -> None:
    """The first start writes events (the admin account); serve seals them within a
    second or two, and what it writes last is sealed when it stops."""
    port = free_port()
    data = ["--data-dir", str(tmp_path / "data")]
    with serving(*data, "--listen", f"127.0.0.1:{port}", cwd=tmp_path) as server:
        deadline = time.monotonic() + 15
        while True:
            report = run_cli("replay", "audit-verify", "--quiet", *data, cwd=tmp_path)
            if " 0 newer events not yet sealed" in report.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert report.returncode == 0, report.stdout + report.stderr
        assert " 0 newer events not yet sealed" in report.stdout
        assert "the log is intact" in report.stdout
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0
    final = run_cli("replay", "audit-verify", "--quiet", *data, cwd=tmp_path)
    assert final.returncode == 0 and "signed checkpoints" in final.stdout


def test_serve_with_no_arguments_uses_the_embedded_default(tmp_path: Path) -> None:
    if not _port_free(5000):
        pytest.skip("port 5000 is taken on this machine")
    with serving(cwd=tmp_path) as server:
        assert server.url == "http://127.0.0.1:5000"
        assert get(server.url + "/health")[0] == 200
    assert (tmp_path / "cargohold-data" / "events.sqlite").exists()


@pytest.mark.postgres
@pytest.mark.minio
def test_serve_on_postgres_and_s3(
    tmp_path: Path, postgres_url: str, minio_server, minio_bucket: str
) -> None:  # type: ignore[no-untyped-def]
    env = {
        "CARGOHOLD_DATABASE": postgres_url,
        "CARGOHOLD_BLOB_STORE": "s3",
        "CARGOHOLD_S3_ENDPOINT": minio_server.endpoint,
        "CARGOHOLD_S3_BUCKET": minio_bucket,
        "CARGOHOLD_S3_ACCESS_KEY": minio_server.access_key,
        "CARGOHOLD_S3_SECRET_KEY": minio_server.secret_key,
    }
    port = free_port()
    with serving(
        "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "d"), cwd=tmp_path, env=env
    ) as server:
        status, _, body = get(server.url + "/health")
        assert status == 200, body
        assert json.loads(body)["status"] == "ok"
    assert "listening on" in server.output()
    assert minio_server.secret_key not in server.output()


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cargohold.cli", *args],
        cwd=cwd,
        env={**BASE_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _bad_cases(tmp_path: Path) -> list[tuple[list[str], dict[str, str], str]]:
    config = tmp_path / "bad.toml"
    config.write_text("listen = '127.0.0.1:1'\ncolour = 'red'\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    return [
        (["--config", str(config)], {}, "unknown setting 'colour'"),
        ([], {"CARGOHOLD_COLOUR": "red"}, "unknown setting in environment: CARGOHOLD_COLOUR"),
        (["--data-dir", str(a_file / "sub")], {}, "is not writable"),
        (
            ["--database", f"postgres://nobody@127.0.0.1:{free_port()}/none"],
            {},
            "cannot open the database",
        ),
        (["--listen", "nowhere"], {}, "listen must be HOST:PORT"),
        ([], {"CARGOHOLD_CIPHER_KEY": "not base64!"}, "cipher_key must be base64"),
        (
            [],
            {"CARGOHOLD_BLOB_STORE": "s3", "CARGOHOLD_S3_ENDPOINT": f"127.0.0.1:{free_port()}"},
            "blob store unusable",
        ),
    ]


@pytest.mark.parametrize("command", [["serve"], ["replay", "verify"], ["replay", "rebuild"]])
def test_bad_configuration_is_one_clear_line(tmp_path: Path, command: list[str]) -> None:
    for args, env, message in _bad_cases(tmp_path):
        extra = [] if "--data-dir" in args else ["--data-dir", str(tmp_path / "d")]
        result = run_cli(*command, *extra, *args, cwd=tmp_path, env=env)
        assert result.returncode == 2, (args, env, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_first_start_prints_the_generated_admin_password_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ("--data-dir", str(data), "--listen", f"127.0.0.1:{free_port()}")
    env = {"CARGOHOLD_AUTH": "on"}
    with serving(*args, cwd=tmp_path, env=env) as server:
        status, headers, _ = get(server.url + "/v2/")
        assert status == 401
        assert headers["www-authenticate"].startswith(f'Bearer realm="{server.url}/v2/auth"')
    first = server.output()
    lines = [line for line in first.splitlines() if "superuser 'admin'" in line]
    assert len(lines) == 1
    password = lines[0].split("password ", 1)[1].split()[0]
    with serving(*args, cwd=tmp_path, env=env) as server:
        request = urllib.request.Request(server.url + "/v2/")
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
    assert "superuser 'admin'" not in server.output()
    assert password not in server.output()


def _send(method: str, url: str, body: bytes = b"", content_type: str = "") -> int:
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=10) as r:
        return int(r.status)


def test_no_pull_is_lost_on_a_clean_shutdown(tmp_path: Path) -> None:
    """Pulls are buffered in memory (flushed about once a second): a SIGTERM right after
    them must still write every one to ``access_log``."""
    import hashlib
    import sqlite3

    port = free_port()
    data = tmp_path / "data"
    pulls = 40
    # NOTE: a flush interval far beyond the test, so only the shutdown flush can write them.
    env = {"CARGOHOLD_ACCESS_LOG_FLUSH_SECONDS": "3600"}
    with serving(
        "--data-dir", str(data), "--listen", f"127.0.0.1:{port}", cwd=tmp_path, env=env
    ) as server:
        url = server.url
        config = b'{"architecture":"amd64","os":"linux"}'
        digest = "sha256:" + hashlib.sha256(config).hexdigest()
        assert _send("POST", f"{url}/v2/acme/app/blobs/uploads/?digest={digest}", config) == 201
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest,
                    "size": len(config),
                },
                "layers": [],
            }
        ).encode()
        media_type = "application/vnd.oci.image.manifest.v1+json"
        assert _send("PUT", f"{url}/v2/acme/app/manifests/v1", manifest, media_type) == 201
        for _ in range(pulls):
            status, _, body = get(f"{url}/v2/acme/app/manifests/v1")
            assert status == 200 and body == manifest
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0
    with sqlite3.connect(data / "views.sqlite") as db:
        rows = db.execute(
            "SELECT repository, metadata FROM access_log WHERE kind = 'pull_repo'"
        ).fetchall()
    assert len(rows) == pulls
    assert all(repo == "acme/app" and json.loads(meta)["tag"] == "v1" for repo, meta in rows)
