"""The OCI distribution API (v1.1) at ``/v2``; ``routing.register`` mounts it."""
