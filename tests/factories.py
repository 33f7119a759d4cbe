"""Builders the test tiers share: settings per backend, and content to push."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cargohold import chores
from cargohold.bootstrap import Container
from cargohold.commands.unit_of_work import Caller
from cargohold.config import Settings, load_settings
from cargohold.domain.values import Actor, ActorKind, Digest, RepositoryName, Tag

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

ALICE = Caller(Actor(ActorKind.USER, "alice"), "req-alice")


class ManualClock:
    """A wall clock in epoch milliseconds that moves only when a test moves it
    (``bootstrap(..., wall_ms=clock)``)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


def settings_for(
    request: pytest.FixtureRequest, backend: str, data_dir: Path, **extra: Any
) -> Settings:
    """Settings on the embedded default or on the real PostgreSQL of the test session."""
    overrides: dict[str, Any] = {"data_dir": data_dir, **extra}
    if backend == "postgres":
        overrides["database"] = request.getfixturevalue("postgres_url")
    return load_settings(environ={}, overrides=overrides)


@dataclass(frozen=True)
class Image:
    manifest: bytes
    digest: Digest
    config: Digest
    layers: tuple[Digest, ...]


def push_image(
    c: Container,
    name: str,
    tag: str | None = "latest",
    *,
    seed: str = "0",
    subject: Digest | None = None,
    subject_size: int = 0,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
    caller: Caller = ALICE,
) -> Image:
    """Put a config and a layer into the blob store, link them, push a manifest."""
    repo = RepositoryName(name)
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = f"layer {seed} ".encode() * 64
    config_digest, _ = c.blobs.put(io.BytesIO(config))
    layer_digest, _ = c.blobs.put(io.BytesIO(layer))
    c.registry.link_blob(repo, config_digest, caller)
    c.registry.link_blob(repo, layer_digest, caller)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": str(config_digest), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": str(layer_digest), "size": len(layer)}],
    }
    if subject is not None:
        manifest["subject"] = {
            "mediaType": OCI_MANIFEST,
            "digest": str(subject),
            "size": subject_size,
        }
    if artifact_type is not None:
        manifest["artifactType"] = artifact_type
    if annotations is not None:
        manifest["annotations"] = annotations
    body = json.dumps(manifest, sort_keys=True).encode()
    digest = Digest.of(body)
    reference: Tag | Digest = Tag(tag) if tag is not None else digest
    c.registry.push_manifest(repo, reference, body, OCI_MANIFEST, caller)
    return Image(body, digest, config_digest, (layer_digest,))


def sqlite_steps(c: Container) -> tuple[Callable[[], int], Callable[[bool], None]]:
    """A counter of the SQLite virtual machine's steps on this thread's views connection,
    and a switch for it: what a query costs, whatever the machine's speed."""
    conn: sqlite3.Connection = c.views_db._connection()  # type: ignore[attr-defined]
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    def switch(on: bool) -> None:
        conn.set_progress_handler(count if on else None, 1)

    return (lambda: steps[0]), switch


def sweep_expired_tags(container: Container) -> int:
    """The tag-expiry chore's one pass (``chores.sweep_expired_tags``) over ``container``."""
    return chores.sweep_expired_tags(container.queries, container.registry, container.site_id)
