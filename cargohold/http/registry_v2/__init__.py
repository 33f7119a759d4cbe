"""The OCI distribution API (v1.1) at ``/v2``."""

from cargohold.http.registry_v2.routing import register

__all__ = ["register"]
