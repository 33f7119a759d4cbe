"""What geo sites agree on besides the log: the signature of a blob URL that one site
gives a client to fetch a blob from another (``http/replication.py`` checks it,
``replay/geo_blobs.py`` makes it)."""

from __future__ import annotations

import hashlib
import hmac


def blob_signature(peer_token: str, digest: str, expires: int) -> str:
    """HMAC-SHA256, under ``peer_token`` (every site of the registry shares it), of blob
    ``digest`` and the epoch second ``expires`` until which the URL is good."""
    message = f"{digest}\n{expires}".encode()
    return hmac.new(peer_token.encode(), message, hashlib.sha256).hexdigest()
