"""Read-your-writes: every command's effect is in the views the moment it returns.

Prints the p50/p99 of the wait (the time from the events being saved to the views
showing them) for the report; asserts visibility, not speed.
"""

from __future__ import annotations

from cargohold.bootstrap import Container
from cargohold.domain.values import RepositoryName, Tag
from tests.factories import ALICE, push_image

NAME = RepositoryName("acme/app")


def test_each_command_is_visible_when_it_returns(container: Container, backend: str) -> None:
    image = push_image(container, "acme/app", "v0")
    q = container.queries
    for i in range(1, 301):
        tag = Tag(f"v{i}")
        container.registry.tag(NAME, tag, image.digest, ALICE)
        assert q.resolve_tag(NAME, tag) == image.digest
        if i % 3 == 0:
            container.registry.untag(NAME, tag, ALICE)
            assert q.resolve_tag(NAME, tag) is None
    p50, p99 = container.runner.latency.percentiles(50, 99)
    print(
        f"\nread-your-writes wait on {backend}: p50 {p50 * 1000:.2f} ms, "
        f"p99 {p99 * 1000:.2f} ms over {len(container.runner.latency)} commands"
    )
    assert len(container.runner.latency) >= 400


def test_concurrent_pushers_on_a_repository_with_many_tags(
    container: Container, backend: str
) -> None:
    """8 threads push one manifest under new tags of a repository that already has
    many (as CI does); each sees its tag the moment its command returns. Snapshots
    every 5 events (the fixture) make the cached aggregate's fast-forward and the
    snapshot path both busy."""
    import threading

    image = push_image(container, "acme/app", "v0")
    for i in range(300):
        container.registry.tag(NAME, Tag(f"old{i}"), image.digest, ALICE)
    container.runner.latency = type(container.runner.latency)()
    q = container.queries
    missing: list[str] = []

    def pusher(k: int) -> None:
        for i in range(25):
            tag = Tag(f"p{k}-{i}")
            container.registry.push_manifest(NAME, tag, image.manifest, None, ALICE)
            if q.resolve_tag(NAME, tag) != image.digest:
                missing.append(str(tag))

    threads = [threading.Thread(target=pusher, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert missing == []
    assert len(q.tags(NAME)) == 1 + 300 + 8 * 25
    p50, p99 = container.runner.latency.percentiles(50, 99)
    print(
        f"\nread-your-writes wait on {backend}, 8 pushers, 300+ tags: p50 {p50 * 1000:.2f} ms, "
        f"p99 {p99 * 1000:.2f} ms over {len(container.runner.latency)} commands"
    )
