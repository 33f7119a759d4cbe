"""``cargohold serve --as-of``: a real server over the data dir of a live one, pulled with
skopeo through the token flow. The tag yields, byte for byte, the image it pointed to
at the moment, while the live registry serves the image pushed since; pushing to the
past is refused with a clear error; ``replay as-of`` reports the same build."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fixtures.images import LAYER_GZIP, OCILayout, gzip_layer, layout_blobs, layout_tagged
from tests.fixtures.server import serving
from tests.fixtures.services import free_port
from tests.fixtures.tools import ToolError, registry_host, run_skopeo

PASSWORD = "as-of-admin-pw"
ENV = {"CARGOHOLD_AUTH": "on", "CARGOHOLD_ADMIN_PASSWORD": PASSWORD}
CREDS = f"admin:{PASSWORD}"


def _image(root: Path, text: str) -> OCILayout:
    layout = OCILayout(root)
    layer, diff_id = gzip_layer({"etc/version": text.encode(), "data/bin": os.urandom(64 * 1024)})
    manifest = layout.add_image([layout.add_blob(layer, LAYER_GZIP)], [diff_id])
    layout.tag(manifest, "v1")
    return layout


def _push(layout: OCILayout, ref: str) -> None:
    run_skopeo(
        "copy",
        "--preserve-digests",
        "--dest-creds",
        CREDS,
        f"oci:{layout.root}:v1",
        f"docker://{ref}",
    )


def _pull(ref: str, dest: Path) -> dict[str, bytes]:
    run_skopeo(
        "copy", "--preserve-digests", "--src-creds", CREDS, f"docker://{ref}", f"oci:{dest}:v1"
    )
    return layout_blobs(dest)


def test_serve_as_of_pulls_what_a_tag_pointed_to_then(tmp_path: Path) -> None:
    data = tmp_path / "data"
    live_listen = f"127.0.0.1:{free_port()}"
    first, second = _image(tmp_path / "first", "one"), _image(tmp_path / "second", "two")
    with serving("--data-dir", str(data), "--listen", live_listen, cwd=tmp_path, env=ENV) as live:
        host = registry_host(live.url)
        _push(first, f"{host}/admin/app:v1")
        time.sleep(0.05)
        moment = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        time.sleep(0.05)
        _push(second, f"{host}/admin/app:v1")

        past_listen = f"127.0.0.1:{free_port()}"
        with serving(
            "--data-dir",
            str(data),
            "--listen",
            past_listen,
            "--as-of",
            moment,
            cwd=tmp_path,
            env=ENV,
        ) as past:
            assert f"read-only as of {moment}" in past.banner
            past_host = registry_host(past.url)
            then = _pull(f"{past_host}/admin/app:v1", tmp_path / "then")
            assert then == layout_blobs(first.root)
            assert layout_tagged(tmp_path / "then", "v1")["digest"] == first.manifests[0]["digest"]
            # the live registry, meanwhile, serves the image pushed since
            now = _pull(f"{host}/admin/app:v1", tmp_path / "now")
            assert now == layout_blobs(second.root)
            with pytest.raises(ToolError) as refused:
                _push(second, f"{past_host}/admin/other:v1")
            assert "read-only" in str(refused.value) or "405" in str(refused.value)
        assert "Traceback" not in past.output(), past.output()[-4000:]

    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "cargohold.cli",
            "replay",
            "as-of",
            moment,
            "--data-dir",
            str(data),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **ENV},
    )
    assert built.returncode == 0, built.stderr
    assert "(the last " in built.stdout and "kept in" in built.stdout
