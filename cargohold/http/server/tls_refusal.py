"""A plain answer to a TLS handshake sent to this plain-HTTP server."""

from __future__ import annotations

from typing import Any

_TLS_REFUSAL_BODY = b"this is an HTTP server, not HTTPS/TLS\r\n"
_TLS_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    + f"Content-Length: {len(_TLS_REFUSAL_BODY)}\r\n\r\n".encode()
    + _TLS_REFUSAL_BODY
)


def refusing_tls(channel_class: type[Any]) -> type[Any]:
    """A waitress channel that answers a TLS ClientHello at once instead of waiting.

    skopeo, podman and buildah with TLS verification off try HTTPS first and fall back to
    HTTP when that fails. waitress would wait for a request line that never comes (120 s;
    the clients give up after 10 s per command). A TLS handshake record starts with byte
    0x16, which no HTTP request can start with: answer it with a plain 400 and close,
    as distribution does ("server gave HTTP response to HTTPS client").
    """

    class RefusingTLS(channel_class):  # type: ignore[misc]
        _first = True

        def received(self, data: bytes) -> bool:
            if self._first and data:
                self._first = False
                if data[:1] == b"\x16":
                    reply = _TLS_REFUSAL
                    with self.outbuf_lock:
                        self.outbufs[-1].append(reply)
                        self.current_outbuf_count += len(reply)
                        self.total_outbufs_len += len(reply)
                    self.close_when_flushed = True
                    return False
            return bool(super().received(data))

    return RefusingTLS
