"""The trainer carries out admin commands that edges queued in the store, each exactly once.

An edge turns an admin request that changes the learner (configuration, policy, model reset,
import and rollback, log deletion, watch settings) into a command
(:class:`bandit.events.Command`, :mod:`server.serving.commands` on the edge side). The trainer
polls for pending commands, claims each (a command is claimed once, by one trainer), carries it
out through :class:`server.trainer.control.LoopControl` or the watcher, and finishes it with a
JSON result, or with the :class:`bandit.errors.BanditError` it raised (its class name and
message, and ``{"target"}`` as the result), which the edge re-raises
(:func:`bandit.errors.rebuild`) so the client gets the error the change itself would give.

Kinds and payloads (JSON unless noted): ``configure`` (the configuration in wire form),
``set_policy`` (``{"name", "arguments"}``), ``reset_policy``, ``reset_model``, ``import_model``
(the archive's bytes), ``delete_logs``, ``activate_model`` (``{"version"}``),
``configure_watch`` (the changed settings in wire form), ``score_models`` (``{"versions"}``:
counterfactual scores of stored versions on the recent events).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from bandit.config import from_wire, to_wire
from bandit.dsjson import iso_time
from bandit.errors import BanditError, InvalidRequest, NotFound, OperationNotAllowed, error_name
from bandit.events import Command, PolicySettings
from server.trainer.control import LoopControl
from server.trainer.loop_status import estimate_body
from server.trainer.observer import LoopObserver
from server.trainer.watch_settings import to_wire as watch_to_wire

log = logging.getLogger(__name__)

BATCH = 16
"""Most commands taken per poll."""

Handler = Callable[[bytes], Awaitable[Any]]


class CommandRunner:
    """Polls the store for pending commands and carries them out in order."""

    def __init__(
        self,
        control: LoopControl,
        observer: LoopObserver,
        *,
        poll: float,
        report: Callable[[], None],
    ) -> None:
        self.control = control
        self._report = report
        self.observer = observer
        self.store = control.service.store
        self.clock = control.service.clock
        self.poll = poll
        self._task: asyncio.Task[None] | None = None
        self._handlers: dict[str, Handler] = {
            "configure": self._configure,
            "set_policy": self._set_policy,
            "reset_policy": self._reset_policy,
            "reset_model": self._reset_model,
            "import_model": self._import_model,
            "delete_logs": self._delete_logs,
            "activate_model": self._activate_model,
            "configure_watch": self._configure_watch,
            "score_models": self._score_models,
        }

    def start(self) -> None:
        """Start polling."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Stop polling (a command being carried out is finished first)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taking commands from the store failed; retrying")
            await asyncio.sleep(self.poll)

    async def run_pending(self) -> int:
        """Carry out every pending command, oldest first; returns how many were taken."""
        taken = 0
        while True:
            batch = await asyncio.to_thread(self.store.pending_commands, 0, BATCH)
            if not batch:
                return taken
            for command in batch:
                claimed = await asyncio.to_thread(
                    self.store.claim_command, command.generation, self.clock()
                )
                if claimed:
                    taken += 1
                    await asyncio.shield(self._carry_out(command))

    async def _carry_out(self, command: Command) -> None:
        handler = self._handlers.get(command.kind)
        result: Any = None
        failure: BanditError | None = None
        try:
            if handler is None:
                raise InvalidRequest(f"unknown command {command.kind!r}")
            result = await handler(command.payload)
        except BanditError as exc:
            failure = exc
        except Exception as exc:
            log.exception("command %s (%s) failed", command.generation, command.kind)
            failure = BanditError(f"the trainer could not carry out the change: {exc}")
        # The report first: an edge that sees the command finished then reads a report that
        # shows its effect (the status, the metrics).
        try:
            await asyncio.to_thread(self._report)
        except Exception:
            log.exception("the report after command %s failed", command.generation)
        now = self.clock()
        if failure is None:
            body = msgspec.json.encode(result)
            await asyncio.to_thread(
                lambda: self.store.finish_command(command.generation, now=now, result=body)
            )
        else:
            code, message = error_name(failure), failure.message
            detail = msgspec.json.encode({"target": failure.target})
            await asyncio.to_thread(
                lambda: self.store.finish_command(
                    command.generation,
                    now=now,
                    result=detail,
                    error_code=code,
                    error_message=message,
                )
            )

    # -- handlers ----------------------------------------------------------------------------

    async def _configure(self, payload: bytes) -> dict[str, Any]:
        control = self.control
        new = from_wire(msgspec.json.decode(payload), base=control.service.config)
        await control.update_config(new)
        return to_wire(control.service.config)

    async def _set_policy(self, payload: bytes) -> dict[str, str]:
        body = msgspec.json.decode(payload, type=dict[str, str])
        policy = PolicySettings(name=body["name"], arguments=body["arguments"])
        stored = await self.control.set_policy(policy)
        return {"name": stored.name, "arguments": stored.arguments}

    async def _reset_policy(self, payload: bytes) -> dict[str, str]:
        del payload
        stored = await self.control.reset_policy()
        return {"name": stored.name, "arguments": stored.arguments}

    async def _reset_model(self, payload: bytes) -> None:
        del payload
        await self.control.reset_model()

    async def _import_model(self, payload: bytes) -> None:
        await self.control.import_model(payload)

    async def _delete_logs(self, payload: bytes) -> dict[str, int]:
        del payload
        return {"deleted": await self.control.delete_logs()}

    async def _activate_model(self, payload: bytes) -> dict[str, Any]:
        version = int(msgspec.json.decode(payload, type=dict[str, int])["version"])
        trainer = self.control.service
        record = await asyncio.to_thread(trainer.store.get_model, version)
        if record is None:
            raise NotFound(f"model version {version} is not stored (only the newest are kept).")
        if record.arguments != trainer.policy_settings.arguments:
            raise OperationNotAllowed(
                f"model version {version} was learned with other policy arguments "
                f"({record.arguments!r}); set that policy first."
            )
        observer = self.observer
        new = await self.control.activate_model(record, observer.restore)
        await observer.activated(record, new)
        return {
            "version": new.version,
            "restoredFrom": version,
            "createdAt": iso_time(new.created_at),
        }

    async def _configure_watch(self, payload: bytes) -> dict[str, Any]:
        changes = msgspec.json.decode(payload)
        if not isinstance(changes, dict):
            raise InvalidRequest("the loop configuration must be a JSON object.")
        try:
            settings = await self.observer.configure(changes)
        except ValueError as exc:
            raise InvalidRequest(f"{exc}.") from exc
        return watch_to_wire(settings)

    async def _score_models(self, payload: bytes) -> dict[str, Any]:
        wanted = set(msgspec.json.decode(payload, type=dict[str, list[int]])["versions"])
        records = [
            r for r in await asyncio.to_thread(self.store.list_models) if r.version in wanted
        ]
        scores = await self.observer.replay(records)
        return {
            str(v): {
                "events": cf.n,
                "policy": estimate_body(cf.policy),
                "baseline": estimate_body(cf.baseline),
                "uniform": estimate_body(cf.uniform),
                "improvement": estimate_body(cf.improvement),
            }
            for v, cf in scores.items()
            if v in wanted
        }
