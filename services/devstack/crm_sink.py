"""A CRM webhook for `leadpipe dev`: checks each hand-off's signature as a receiver should, and
prints it, so `make run` shows route's CRM delivery at work (`.leadpipe/logs/crm.log`).

`python -m services.devstack.crm_sink --port 8090` with the secret in LEADPIPE_DEV_CRM_SECRET;
it answers 204 to a hand-off signed with it and 401 to anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml
from aiohttp import web

from services.route.crm import SIGNATURE_HEADER, verify
from services.route.settings import RouteSettings

SECRET = web.AppKey("secret", str)


async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    if not verify(request.app[SECRET], request.headers.get(SIGNATURE_HEADER, ""), body, now=time.time()):
        print(f"refused a post without a valid {SIGNATURE_HEADER}", flush=True)
        return web.Response(status=401)
    handoff = json.loads(body)
    assignee = handoff["assignee"]
    print(
        f"hand-off {handoff['handoff_id']} of {handoff['lead_id']} to {assignee['team']}/"
        f"{assignee.get('rep_id') or 'queue'} ({handoff['sla']['tier']}, due {handoff['sla']['due_at']}), "
        f"attempt {request.headers.get('Leadpipe-Attempt', '?')}, signature ok",
        flush=True,
    )
    return web.Response(status=204)


def make_app(secret: str) -> web.Application:
    app = web.Application()
    app[SECRET] = secret
    app.router.add_post("/hooks/handoffs", receive)
    return app


def routing_with_webhook(url: str, path: Path) -> Path:
    """Route's routing rules (ROUTE_RULES_FILE, else the shipped ones) written to `path` with every
    team that has no webhook of its own posting its hand-offs to `url`."""
    rules = yaml.safe_load(RouteSettings().rules_file.read_text(encoding="utf-8"))
    for team in rules["teams"]:
        team.setdefault("crm_webhook_url", url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    web.run_app(make_app(os.environ["LEADPIPE_DEV_CRM_SECRET"]), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
