"""An edge's side of admin changes: queue a command in the store, wait for the trainer.

Changes that touch the learner are carried out by the trainer alone
(:mod:`server.trainer.commands`). :meth:`Commands.call` queues one and waits for its outcome, so
an admin request still answers with the change made (or with the error it met), as on a single
process. If no trainer takes the command within ``command_timeout`` seconds the edge cancels it
(only a command still pending can be cancelled) and answers 503: nothing was changed. A command
the trainer has claimed is waited for up to the timeout once more, then answered 503 without
cancelling: the change may still complete, and the 503 says so.

After every change the edge refreshes its cache at once, so its next request sees the change;
other edges see it within their refresh period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from bandit.errors import ServiceUnavailable, rebuild
from bandit.store import ControlChannel

POLL = 0.02
"""Seconds between reads of a queued command's state."""


class Commands:
    """Queues commands for the trainer and waits for their outcome."""

    def __init__(
        self,
        store: ControlChannel,
        *,
        clock: Callable[[], float],
        timeout: float,
        after: Callable[[], Awaitable[None]],
    ) -> None:
        self.store = store
        self.clock = clock
        self.timeout = timeout
        self._after = after

    async def call(self, kind: str, payload: Any = None, *, raw: bytes | None = None) -> Any:
        """Carry out ``kind`` with ``payload`` (JSON-encoded; ``raw`` bytes as they are) and
        return the trainer's JSON result.

        Raises:
            BanditError: the error the trainer met carrying it out.
            ServiceUnavailable: no trainer carried it out in time.
        """
        body = raw if raw is not None else msgspec.json.encode(payload)
        store = self.store
        generation = await asyncio.to_thread(store.submit_command, kind, body, self.clock())
        try:
            return await self._outcome(generation)
        finally:
            await self._after()

    async def _outcome(self, generation: int) -> Any:
        store = self.store
        deadline = time.monotonic() + self.timeout
        claimed_deadline: float | None = None
        while True:
            command = await asyncio.to_thread(store.get_command, generation)
            if command is None:
                raise ServiceUnavailable("the queued change disappeared from the store")
            if command.state == "done":
                return msgspec.json.decode(command.result) if command.result else None
            if command.state == "failed":
                detail = msgspec.json.decode(command.result) if command.result else {}
                target = detail.get("target") if isinstance(detail, dict) else None
                raise rebuild(command.error_code or "", command.error_message or "", target)
            if command.state == "cancelled":
                raise ServiceUnavailable("the change was cancelled before the trainer took it")
            now = time.monotonic()
            if command.state == "pending" and now >= deadline:
                if await asyncio.to_thread(store.cancel_command, generation, self.clock()):
                    raise ServiceUnavailable(
                        f"no trainer took the change within {self.timeout:g} s, so it was not "
                        "made; check that banditd train is running and try again."
                    )
                continue  # claimed meanwhile: wait for it
            if command.state == "claimed":
                claimed_deadline = claimed_deadline or now + self.timeout
                if now >= claimed_deadline:
                    raise ServiceUnavailable(
                        f"the trainer took the change but did not finish it within "
                        f"{self.timeout:g} s; it may still complete."
                    )
            await asyncio.sleep(POLL)
