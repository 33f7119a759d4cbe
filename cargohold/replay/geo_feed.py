"""A site's log as its peers read it (``docs/geo-replication.md``, "Shipping"): pages of
msgpack frames, each a bounded slice of the log after a position.

::

    header   ["cargohold-log", {"version": 1, "site_id": str, "after": int, "head": int,
                              "site_name": str (optional, a label for people)}]
    event    ["event", position int, originator_id str, version int, topic str, state bin]
    trailer  ["end", {"through": int, "events": int, "sha256": str}]

- Every event the site holds is served, its own and those it received, in its log's
  order: a peer that reads this site also gets what this site got from sites it cannot
  reach. The reader drops what it already holds (by ``(originator_id, version)``) and the
  events of its own streams, so nothing loops or lands twice.
- ``state`` is the transcoder's bytes, deciphered and decompressed (site-neutral, as in
  bundles): the sites need not share a ``cipher_key``.
- ``through`` is the position of the last event served (``after`` when none): the next
  page is read after it. ``head`` is the log's last position when the page was cut, so a
  reader knows its lag in events.
- A page holds at most ``limit`` events and stops once ``max_bytes`` of frames are out
  (always at least one event, if there is one). The trailer's ``sha256`` covers every
  byte before it; ``read_page`` checks it and the frames' shapes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgpack

from cargohold.adapters.eventstore import RegistryLog, plain_state

MAGIC = "cargohold-log"
VERSION = 1
MEDIA_TYPE = "application/vnd.cargohold.log.v1+msgpack"
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
MAX_PAGE_BYTES = 4 * 1024 * 1024
#: The largest frame a reader accepts (an event's state).
MAX_FRAME = 64 * 1024 * 1024


class FeedError(Exception):
    """A page that is not one this version reads, or is damaged."""


@dataclass(frozen=True)
class FeedEvent:
    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes


@dataclass(frozen=True)
class Page:
    site_id: UUID
    after: int
    head: int
    through: int
    events: tuple[FeedEvent, ...]
    site_name: str | None = None


@dataclass(frozen=True)
class LogPages:
    """``write_page`` over one site's log (what ``http/replication.py`` serves)."""

    log: RegistryLog
    site_id: UUID
    site_name: str = ""
    media_type: str = MEDIA_TYPE
    default_limit: int = DEFAULT_LIMIT
    max_limit: int = MAX_LIMIT

    def page(self, after: int, limit: int) -> bytes:
        return write_page(self.log, self.site_id, after, limit, site_name=self.site_name)


def write_page(
    log: RegistryLog,
    site_id: UUID,
    after: int,
    limit: int = DEFAULT_LIMIT,
    max_bytes: int = MAX_PAGE_BYTES,
    *,
    site_name: str = "",
) -> bytes:
    """The page of ``log`` after position ``after`` (the module docstring)."""
    head = int(log.recorder.max_notification_id() or 0)
    packer = msgpack.Packer(use_bin_type=True)
    meta: dict[str, Any] = {"version": VERSION, "site_id": str(site_id), "after": after}
    meta["head"] = head
    if site_name:
        meta["site_name"] = site_name
    out = bytearray(packer.pack([MAGIC, meta]))
    notifications = log.recorder.select_notifications(
        start=after, limit=min(limit, MAX_LIMIT), inclusive_of_start=False
    )
    through, count = after, 0
    for n in notifications:
        frame = packer.pack(
            [
                "event",
                n.id,
                str(n.originator_id),
                n.originator_version,
                n.topic,
                plain_state(log.mapper, n.state),
            ]
        )
        if count and len(out) + len(frame) > max_bytes:
            break
        out += frame
        through, count = n.id, count + 1
    digest = hashlib.sha256(out).hexdigest()
    out += packer.pack(["end", {"through": through, "events": count, "sha256": digest}])
    return bytes(out)


def read_page(data: bytes) -> Page:
    """Parse and check a page; ``FeedError`` for anything off."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_FRAME)
    unpacker.feed(data)
    frames: list[tuple[Any, int]] = []
    try:
        while True:
            try:
                frame = unpacker.unpack()
            except msgpack.OutOfData:
                break
            frames.append((frame, unpacker.tell()))
    except (msgpack.UnpackException, ValueError) as e:
        raise FeedError(f"not a log page: {e}") from None
    if len(frames) < 2:
        raise FeedError("a log page has a header and a trailer")
    header, trailer = frames[0][0], frames[-1][0]
    if not (isinstance(header, list) and len(header) == 2 and header[0] == MAGIC):
        raise FeedError("not a log page: no header")
    meta = header[1]
    if not isinstance(meta, dict) or meta.get("version") != VERSION:
        raise FeedError(f"a log page of another version: {meta!r:.80}")
    if not (isinstance(trailer, list) and len(trailer) == 2 and trailer[0] == "end"):
        raise FeedError("a truncated log page: no trailer")
    end = trailer[1]
    body_end = frames[-2][1]
    if not isinstance(end, dict) or hashlib.sha256(data[:body_end]).hexdigest() != end.get(
        "sha256"
    ):
        raise FeedError("a damaged log page: its checksum does not match")
    events: list[FeedEvent] = []
    for frame, _ in frames[1:-1]:
        if not (isinstance(frame, list) and len(frame) == 6 and frame[0] == "event"):
            raise FeedError(f"not an event frame: {frame!r:.80}")
        _, position, originator, version, topic, state = frame
        events.append(
            FeedEvent(int(position), UUID(str(originator)), int(version), str(topic), bytes(state))
        )
    if len(events) != end.get("events"):
        raise FeedError("a log page whose trailer counts other events")
    try:
        return Page(
            UUID(str(meta["site_id"])),
            int(meta["after"]),
            int(meta["head"]),
            int(end["through"]),
            tuple(events),
            str(meta["site_name"]) if meta.get("site_name") else None,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise FeedError(f"a log page with a malformed header or trailer: {e}") from None
