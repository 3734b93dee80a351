"""The ceiling: a minimal aiohttp service that parses the same bodies and answers fixed responses.

It does what any aiohttp JSON service must do for these endpoints — read the body, decode it with
the standard library's ``json`` (as an unoptimised service would), check it has the expected
shape, encode a response — and nothing a decision service adds: no validation beyond that, no
model, no logging, no store. banditd's requests/s are reported as a ratio to this server's, on the
same core, driven by the same load generator in the same run.

Run: ``python -m bench.minimal_server --port 8081``.
"""

from __future__ import annotations

import argparse
import json
import sys

from aiohttp import web

RANKING = [{"id": f"article-{i}", "probability": 0.82 if i == 0 else 0.02} for i in range(10)]
"""The fixed ranking every rank gets."""


def rank_answer(raw: bytes) -> str | None:
    """The rank response body for a request body, or None when it is not a rank request.

    The handler's whole work, shared with :mod:`bench.floor_server` so both do the same.
    """
    body = json.loads(raw)
    if not isinstance(body, dict) or not isinstance(body.get("actions"), list):
        return None
    payload = {
        "ranking": RANKING,
        "eventId": body.get("eventId") or "generated",
        "rewardActionId": "article-0",
    }
    return json.dumps(payload, separators=(",", ":"))


def reward_accepted(raw: bytes) -> bool:
    """Whether a request body is a reward request (as :func:`rank_answer`, shared)."""
    body = json.loads(raw)
    return isinstance(body, dict) and "value" in body


async def rank(request: web.Request) -> web.Response:
    text = rank_answer(await request.read())
    if text is None:
        raise web.HTTPBadRequest()
    return web.Response(status=201, text=text, content_type="application/json")


async def reward(request: web.Request) -> web.Response:
    if not reward_accepted(await request.read()):
        raise web.HTTPBadRequest()
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app() -> web.Application:
    """The minimal app, on banditd's paths so the same load scripts drive both."""
    app = web.Application()
    app.router.add_post("/v1/rank", rank)
    app.router.add_post("/v1/events/{event_id:[^/]+}/reward", reward)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1 until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m bench.minimal_server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(create_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
