"""The audit log: every event as a Quay log entry, and the proof that the log is intact.

- ``kinds``: Quay's log kinds and ``AuditMapper``, the table from event class to kind and
  metadata (the README points here);
- ``entry``: an entry's columns and its row; ``writer``: what the projection pass writes;
- ``counts``: the per-day counts per kind (``audit_counts``, ``access_counts``);
- ``queries``: the facade the ``/logs`` endpoints read;
- ``chain``, ``chain_format``, ``chain_verify``: the tamper-evident hash chain over the
  stored log (sealing and checkpoints; its format; its verification).

The pulls and logins, which are not events, come from ``projections/access_log.py``.
"""
