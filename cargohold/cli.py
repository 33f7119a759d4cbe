"""``cargohold`` command line: ``serve [--as-of TIME]``,
``replay rebuild | verify | as-of TIME | audit-seal | audit-verify``, ``export``, ``import``.

``export [--since POSITION] [--repos PATTERN] FILE`` writes a bundle of repositories (with
their history, permissions, the users and organisations they need, and their blobs) for
an air-gapped site; it prints the position to pass as ``--since`` next time.
``import FILE`` verifies a bundle whole, refuses one that conflicts with this site (exit
1, nothing written), and applies it; it is idempotent and resumable. Both show progress
on stderr unless ``--quiet``. See ``cargohold/replay/bundle.py``.

Every command takes the same options (``--data-dir``, ``--listen``, ``--config``), on top
of ``CARGOHOLD_*`` environment variables. Configuration and startup problems print one
line to stderr and exit 2; no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import socket
import sys
from collections.abc import Sequence
from typing import Any

from cargohold.adapters.malloc import limit_arenas, release_free_memory
from cargohold.bootstrap import Container, StartupError, bootstrap, ensure_admin
from cargohold.config import ConfigError, Settings, load_settings, parse_instant
from cargohold.domain.errors import StorageError

EXIT_OK = 0
EXIT_DIFFERENCES = 1
EXIT_CONFIG = 2


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config file")
    common.add_argument(
        "--data-dir", metavar="DIR", help="where the embedded database and blobs live"
    )
    common.add_argument("--listen", metavar="HOST:PORT", help="address to serve on")
    common.add_argument(
        "--database", metavar="URL", help="'sqlite' (default) or postgres://user:pass@host/db"
    )
    common.add_argument("--blob-store", choices=["filesystem", "s3"], help="where blobs live")
    common.add_argument("--quiet", action="store_true", help="no progress output")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="cargohold", description="An event-sourced OCI container registry."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", parents=[common], help="run the registry")
    serve.add_argument("--threads", type=int, help="request threads per worker (default 8)")
    serve.add_argument(
        "--workers",
        type=int,
        help="processes sharing the listening socket (default: one per CPU, at most 4)",
    )
    serve.add_argument(
        "--peer",
        action="append",
        metavar="URL",
        help="a geo peer's base URL to replicate from (repeat for each; see 'peers')",
    )
    serve.add_argument(
        "--as-of",
        metavar="TIME",
        help="serve the registry as it stood at TIME, read-only (see 'replay as-of')",
    )
    replay = commands.add_parser("replay", help="rebuild or verify the read models")
    actions = replay.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "rebuild", parents=[common], help="rebuild every view from the log and swap it in"
    )
    actions.add_parser(
        "verify", parents=[common], help="compare the live views with a fresh replay"
    )
    as_of = actions.add_parser(
        "as-of",
        parents=[common],
        help="build the views of the registry as it stood at TIME and keep them",
        description="Build the read models as they stood at TIME: an ISO 8601 date or "
        "time, UTC unless it carries an offset (2026-11-24, 2026-11-24T15:00:00Z, "
        "2026-11-24T16:00+01:00), or @ and epoch seconds. They are kept for "
        "'serve --as-of TIME'; a later build resumes from them.",
    )
    as_of.add_argument("time", metavar="TIME")
    as_of.add_argument("--drop", action="store_true", help="remove the kept views instead")
    actions.add_parser(
        "audit-seal",
        parents=[common],
        help="add new events to the audit hash chain and sign a checkpoint (serve does "
        "this every second)",
    )
    actions.add_parser(
        "audit-verify",
        parents=[common],
        help="recompute the audit hash chain and name the first altered, reordered or "
        "deleted event",
    )
    _bundle_parsers(commands, common)
    mirror = commands.add_parser("mirror", help="repository mirrors")
    mirror_actions = mirror.add_subparsers(dest="action", required=True, metavar="ACTION")
    run_once = mirror_actions.add_parser(
        "run-once",
        parents=[common],
        help="run every mirror sync that is due now (or only REPO's), then exit",
    )
    run_once.add_argument("repository", nargs="?", metavar="REPO", help="namespace/name")
    site = commands.add_parser("site", help="this site and its geo peers")
    site_actions = site.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = site_actions.add_parser(
        "status",
        parents=[common],
        help="this site and each geo peer's link, as GET /api/v1/superuser/sites shows them",
    )
    status.add_argument(
        "--peer", action="append", metavar="URL", help="a geo peer (as serve's --peer)"
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        config_file=args.config,
        overrides={
            "data_dir": args.data_dir,
            "listen": args.listen,
            "database": args.database,
            "blob_store": args.blob_store,
            "threads": getattr(args, "threads", None),
            "workers": getattr(args, "workers", None),
            "as_of": getattr(args, "as_of", None),
            "peers": ",".join(args.peer) if getattr(args, "peer", None) else None,
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # NOTE: while starting, library retries (psycopg pool, urllib3) stay quiet: a failed
    # start is reported in one line. Logging proper begins once everything is open.
    quiet_start = logging.NullHandler()
    logging.getLogger().addHandler(quiet_start)
    if args.command == "serve":
        # Before any thread starts (bootstrap starts some): see adapters/malloc.py.
        limit_arenas()
    try:
        settings = _settings(args)
        at_ms = parse_instant(args.time) if getattr(args, "action", None) == "as-of" else None
        sock = _bind(settings) if args.command == "serve" else None
        if sock is not None and settings.as_of:
            container = _bootstrap_as_of(settings, quiet=args.quiet)
        else:  # NOTE: only serve serves a moment; replay works on the live views
            container = bootstrap(dataclasses.replace(settings, as_of=""))
    except (ConfigError, StartupError) as e:
        print(f"cargohold: {e}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        logging.getLogger().removeHandler(quiet_start)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # NOTE: httpx logs every upstream request of the mirror worker at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        if sock is not None:
            return _serve(container, sock)
        if args.command in ("export", "import"):
            return _bundle(container, args)
        if args.command == "mirror":
            return _mirror_run_once(container, args.repository)
        if args.command == "site":
            return _site_status(container)
        if at_ms is not None:
            return _as_of(container, at_ms, drop=args.drop, quiet=args.quiet)
        return _replay(container, args.action, quiet=args.quiet)
    except StorageError as e:
        print(f"cargohold: {e.message}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        container.close()


def _site_status(container: Container) -> int:
    from cargohold.http.app import site_status

    print(json.dumps(site_status(container).status(), indent=2))
    return 0


def _bootstrap_as_of(settings: Settings, *, quiet: bool) -> Container:
    from cargohold.progress import follow_positions, progress_bar

    bar = progress_bar(0, f"views as of {settings.as_of}", quiet=quiet)
    advance = follow_positions(bar)
    try:
        return bootstrap(settings, as_of_progress=advance)
    finally:
        bar.close()


def _as_of(container: Container, at_ms: int, *, drop: bool, quiet: bool) -> int:
    from cargohold.adapters.eventstore import LogReader
    from cargohold.bootstrap.stores import data_dir
    from cargohold.progress import follow_positions, progress_bar
    from cargohold.replay import as_of

    layout = data_dir(container.settings)
    live_db = container.views_db
    if drop:
        found = as_of.drop(layout, live_db, at_ms)
        what = "removed" if found else "there were no"
        print(f"{what} views as of {as_of.stamp(at_ms)} ({as_of.location(layout, live_db, at_ms)})")
        return EXIT_OK
    db = as_of.open_views(layout, live_db, at_ms)
    bar = progress_bar(container.runner.position(), "as-of", quiet=quiet)
    advance = follow_positions(bar)
    try:
        views = as_of.build(
            layout,
            LogReader(container.log),
            live_db,
            db,
            at_ms,
            now_ms=container.queries.now_ms(),
            progress=advance,
        )
    except as_of.AsOfError as e:
        print(f"cargohold: {e}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        bar.close()
        db.close()
    last = (
        "no events"
        if views.last_event_ms is None
        else f"the last {as_of.stamp(views.last_event_ms)}"
    )
    print(
        f"views as of {as_of.stamp(at_ms)}: the log up to position {views.position} "
        f"({last}); {views.access_entries} pulls and logins; kept in {views.location}"
    )
    if not views.final:
        print("no later event yet: a later build may add events stamped up to that moment")
    print(f"serve them with: cargohold serve --as-of {as_of.stamp(at_ms)}")
    return EXIT_OK


def _bind(settings: Settings) -> socket.socket:
    # NOTE: imported here: only serve loads the HTTP stack.
    from cargohold.bootstrap.serving import listen

    return listen(settings)


def _serve(container: Container, sock: socket.socket) -> int:
    from cargohold.bootstrap.serving import serve_with, serve_workers
    from cargohold.http.server.listening import announce
    from cargohold.replay.geo_replicator import peers_hold_a_registry

    settings = container.settings
    # NOTE: a site started with peers that already hold a registry joins it: its
    # superuser arrives with their log (two sites' own admin would be two accounts).
    joins = bool(settings.peer_urls) and not container.identity_queries.has_accounts()
    joins = joins and peers_hold_a_registry(settings.peer_urls, settings.peer_token)
    password = None if container.read_only or joins else ensure_admin(container)
    if password is not None:
        # NOTE: the one place a secret is printed, on purpose, once: the operator needs it.
        print(
            f"cargohold: created the superuser 'admin' with password {password} "
            "(shown only now; change it)",
            file=sys.stderr,
            flush=True,
        )
    if settings.workers == 1:
        announce(settings, sock)
        serve_with(container, sock)
        return EXIT_OK
    # The parent only migrated and caught the views up; workers open their own stores.
    container.close()
    # PERF: what the start left behind is not copied into every worker: collected and
    # handed back first; what stays is frozen, so the workers' collections do not touch
    # (and copy) the pages they share with the parent.
    gc.collect()
    release_free_memory()
    gc.freeze()
    announce(settings, sock)
    return serve_workers(settings, sock)


def _replay(container: Container, action: str, *, quiet: bool) -> int:
    from cargohold.adapters.eventstore import LogReader
    from cargohold.bootstrap.stores import data_dir
    from cargohold.replay.rebuild import rebuild, verify

    if action == "audit-seal":
        chain = container.audit_chain
        sealed = chain.seal()
        chain.checkpoint()
        position, link = chain.head()
        print(f"sealed {sealed} events; chain at position {position}, link {link.hex()}")
        return EXIT_OK
    if action == "audit-verify":
        return _audit_verify(container, quiet=quiet)
    views = (container.views_db, LogReader(container.log), container.runner)
    layout = data_dir(container.settings)
    if action == "rebuild":
        result = rebuild(*views, layout, quiet=quiet)
        print(
            f"rebuilt every view from {result.events} events; views at position {result.position}"
        )
        return EXIT_OK
    result = verify(*views, layout, quiet=quiet)
    for difference in result.differences:
        print(difference)
    if result.differences:
        print(
            f"views differ from a replay of {result.events} events: "
            f"{len(result.differences)} rows differ",
        )
        return EXIT_DIFFERENCES
    print(f"views match a replay of {result.events} events")
    return EXIT_OK


def _audit_verify(container: Container, *, quiet: bool) -> int:
    from cargohold.progress import progress_bar

    chain = container.audit_chain
    with progress_bar(chain.head()[0], "verifying", quiet=quiet) as bar:
        report = chain.verify(progress=bar.update)
    for problem in report.problems:
        print(problem)
    if report.more_problems:
        print(f"... and {report.more_problems} more problems")
    print(
        f"{report.events} events checked against the chain sealed to position "
        f"{report.sealed_position}; {report.unsealed} newer events not yet sealed; "
        f"{report.checkpoints} signed checkpoints"
    )
    if report.last_checkpoint is not None:
        position, link, sealed_at = report.last_checkpoint
        print(f"last checkpoint: position {position}, link {link}, signed {sealed_at}")
    if report.problems:
        first = report.problems[0]
        print(f"TAMPERED: first problem at position {first.position} ({first.kind})")
        return EXIT_DIFFERENCES
    print("the log is intact")
    return EXIT_OK


# -- mirrors -----------------------------------------------------------------------------


def _mirror_run_once(container: Container, repository: str | None) -> int:
    """``mirror run-once [REPO]``: the due syncs (REPO's even when it is not due yet is
    what ``sync-now`` is for), reported one line each."""
    from cargohold import chores

    ran = chores.sync_due_mirrors(
        container.mirror_queries, container.mirror_sync, container.queries.now_ms(), repository
    )
    print(f"{ran} mirror sync{'' if ran == 1 else 's'} ran")
    return EXIT_OK


# -- export and import (air-gapped sites) ----------------------------------------------


def _bundle_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    export = commands.add_parser(
        "export",
        parents=[common],
        help="write repositories, their history, permissions and blobs to a bundle file",
    )
    export.add_argument(
        "--since",
        type=int,
        default=0,
        metavar="POSITION",
        help="only what is new after this log position (the one the last export printed)",
    )
    export.add_argument(
        "--repos",
        action="append",
        metavar="PATTERN",
        help="namespace/name glob (repeatable or comma-separated; default: every repository)",
    )
    export.add_argument("file", metavar="FILE", help="the bundle to write")
    imported = commands.add_parser(
        "import", parents=[common], help="verify a bundle and apply it (idempotent, resumable)"
    )
    imported.add_argument("file", metavar="FILE", help="the bundle to read")


def _bundle(container: Container, args: argparse.Namespace) -> int:
    from pathlib import Path

    from cargohold.replay.bundle import BundleError, ImportRefused, export_bundle, parse_patterns
    from cargohold.replay.bundle_import import import_bundle

    path = Path(args.file)
    try:
        if args.command == "export":
            ex = export_bundle(
                container.log,
                container.blobs,
                container.site_id,
                path,
                since=args.since,
                patterns=parse_patterns(args.repos),
                quiet=args.quiet,
            )
            if not ex.repositories:
                print("cargohold: warning: no repository matches", file=sys.stderr)
            for digest in ex.missing_blobs:
                print(
                    f"cargohold: warning: blob {digest} is not in the blob store", file=sys.stderr
                )
            print(
                f"exported {ex.repositories} repositories: {ex.events} events "
                f"(log positions {ex.after}+1 to {ex.through}) and "
                f"{ex.blobs} blobs ({ex.blob_bytes} bytes) to {path} ({ex.size} bytes); "
                f"next export: --since {ex.through}"
            )
            return EXIT_OK
        im = import_bundle(
            container.log,
            container.blobs,
            container.views_db,
            container.runner,
            container.site_id,
            path,
            quiet=args.quiet,
        )
    except ImportRefused as e:
        for problem in e.problems:
            print(f"cargohold: {problem}", file=sys.stderr)
        print(f"cargohold: {e}", file=sys.stderr)
        return EXIT_DIFFERENCES
    except BundleError as e:
        print(f"cargohold: {e}", file=sys.stderr)
        return EXIT_DIFFERENCES
    print(
        f"imported {im.events} events ({im.events_present} already here) and {im.blobs} blobs "
        f"({im.blob_bytes} bytes; {im.blobs_present} already here) from site {im.site_id}, "
        f"positions {im.after}+1 to {im.through}; views at position {im.position}"
    )
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
