"""Multi-slot rank, reward and activate: answered as Personalizer answers them on a loop that is
not multi-slot (400 ``InvalidMultiSlotApiAccess``).

banditd's loops are single-slot (``--cb_explore_adf``); a multi-slot loop needs conditional
contextual bandits (``--ccb_explore_adf``), which the policy endpoint does not accept.
"""

from __future__ import annotations

from aiohttp import web

from bandit.errors import InvalidMultiSlotApiAccess
from server.api import contracts as c
from server.api.operations import Operation, Response, declare, mount


async def multislot(request: web.Request) -> web.Response:
    raise InvalidMultiSlotApiAccess(
        "this loop is single-slot: multi-slot rank, reward and activate need a multi-slot "
        "(--ccb_explore_adf) loop, which banditd does not support.",
    )


_REFUSED = (Response(status=400, description="Not a multi-slot loop.", body=c.ErrorResponse),)
_EVENT = "/multislot/events/{event_id:[^/]+}"

OPERATIONS = declare(
    *(
        Operation(
            id=f"multiSlot{role.title()}",
            role=role,
            method="POST",
            path=path,
            handler=multislot,
            summary=f"Multi-slot {role}: refused, as on a single-slot Personalizer loop.",
            responses=_REFUSED,
        )
        for role, path in (
            ("rank", "/multislot/rank"),
            ("reward", f"{_EVENT}/reward"),
            ("activate", f"{_EVENT}/activate"),
        )
    )
)


def add_multislot_routes(app: web.Application) -> None:
    """Mount the multi-slot operations."""
    mount(app, OPERATIONS)
