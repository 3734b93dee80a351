"""Offline evaluations: create, get, list, delete, and apply a result as the online policy.

v1.x creates with ``POST /evaluations`` (201, ``Location``, the Evaluation) and lists as a bare
array; 2022-09-01-preview creates with ``PUT /evaluations/{id}`` (200) and lists as
``{value, nextLink}``. An edge stores the evaluation as ``Running``; the trainer's job replays the
joined events of the window through the online policy, the baseline, uniform random, each custom
policy and, with policy optimization, a grid of learning settings (:mod:`bandit.evaluation`),
and saves the result into the record (:mod:`server.trainer.job_work`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

from aiohttp import web

from bandit.errors import (
    DuplicateCustomPolicyNames,
    EvaluationNotFound,
    InvalidEvaluationContract,
    InvalidPolicyConfiguration,
    InvalidRequest,
    NoLogsExistInDateRange,
    OperationNotAllowed,
    ResourceConflict,
)
from bandit.evaluation import PolicySource
from bandit.store import JobStore
from policies import validate_arguments
from server.api import contracts as c
from server.api.base import PREFIXES
from server.serving.commands import Commands
from server.serving.service import Service
from server.trainer import job_records as wire

MAX_POLICIES = 20
RESERVED = ("Online", "Baseline", "Random")
_ERROR = c.ErrorResponse


def parse_time(text: str, target: str, error: type[InvalidRequest]) -> float:
    """Seconds since the epoch of an ISO-8601 date-time (UTC when it has no offset)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise error(f"{target} must be an ISO-8601 date-time.", target=target) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def api_version(request: web.Request) -> str:
    """``2022`` for the unversioned ``/personalizer`` form, ``v1.0``, or ``v1.1``."""
    name = request.match_info.route.name or ""
    prefix = PREFIXES[int(name.rsplit(".p", 1)[1])] if ".p" in name else "/v1"
    return {"/personalizer": "2022", "/personalizer/v1.0": "v1.0"}.get(prefix, "v1.1")


def path_id(request: web.Request, key: str) -> str:
    """A percent-decoded id path segment."""
    raw = request.match_info[key]
    value = unquote(raw) if "%" in raw else raw
    if "\x00" in value:  # no stored id holds one (PostgreSQL's text cannot)
        raise InvalidEvaluationContract(f"{key} must not contain the NUL character.")
    return value


class Evaluations:
    """Evaluation records (the trainer runs their jobs: :mod:`server.trainer.job_work`)."""

    def __init__(self, service: Service, commands: Commands) -> None:
        self.service = service
        self.store: JobStore = service.store
        self.commands = commands

    def get(self, evaluation_id: str) -> wire.StoredEvaluation:
        record = self.store.get_job(wire.KIND, evaluation_id)
        if record is None:
            raise EvaluationNotFound(f"No evaluation with id {evaluation_id!r} exists.")
        return wire.decode(record.data)

    def all(self) -> list[wire.StoredEvaluation]:
        return [wire.decode(r.data) for r in self.store.list_jobs(wire.KIND)]

    def delete(self, evaluation_id: str) -> None:
        self.get(evaluation_id)
        self.store.delete_job(wire.KIND, evaluation_id)  # the trainer stops its job

    def create(self, evaluation_id: str, contract: c.EvaluationContract) -> wire.StoredEvaluation:
        """Validate, store as Running and queue the job; an identical repeat is a no-op."""
        if len(evaluation_id) > 256:
            raise InvalidEvaluationContract("evaluation ids are at most 256 characters.")
        start = parse_time(contract.start_time, "startTime", InvalidEvaluationContract)
        end = parse_time(contract.end_time, "endTime", InvalidEvaluationContract)
        if not start < end:
            raise InvalidEvaluationContract("startTime must be before endTime.", target="startTime")
        policies = [(p.name, p.arguments) for p in contract.policies]
        if len(policies) > MAX_POLICIES:
            raise InvalidEvaluationContract(
                f"at most {MAX_POLICIES} policies per evaluation.", target="policies"
            )
        names = [n for n, _ in policies]
        if len(set(names)) != len(names) or set(names) & set(RESERVED):
            raise DuplicateCustomPolicyNames(
                "policy names must be unique and differ from Online, Baseline and Random.",
                target="policies",
            )
        for _, arguments in policies:
            validate_arguments(arguments)
        optimize = bool(
            contract.enable_offline_experimentation or contract.enable_policy_optimization
        )
        existing = self.store.get_job(wire.KIND, evaluation_id)
        if existing is not None:
            stored = wire.decode(existing.data)
            same = (stored.name, stored.start, stored.end, stored.policies, stored.optimize)
            if same != (contract.name, start, end, policies, optimize):
                raise ResourceConflict(
                    f"evaluation {evaluation_id!r} exists with a different definition.",
                    target="evaluationId",
                )
            return stored
        if not self.store.joined_between(start, end, 0, 1):
            raise NoLogsExistInDateRange(
                "no joined events were logged between startTime and endTime.", target="startTime"
            )
        service = self.service
        evaluation = wire.StoredEvaluation(
            id=evaluation_id,
            name=contract.name,
            start=start,
            end=end,
            created=service.clock(),
            status="Running",
            policies=policies,
            optimize=optimize,
            online=(service.policy_settings.name, service.policy_settings.arguments),
            epsilon=service.config.exploration_percentage,
            min_propensity=service.config.min_propensity,
        )
        self.store.save_job(wire.evaluation_record(evaluation))  # the trainer runs it
        return evaluation

    async def apply(self, reference: c.PolicyReferenceContract) -> None:
        """Make a custom, online or optimized policy of a finished evaluation the online one."""
        evaluation = self.get(reference.evaluation_id)
        if evaluation.status != "Succeeded":
            raise OperationNotAllowed(
                f"evaluation {evaluation.id!r} has not succeeded (status {evaluation.status}).",
                target="evaluationId",
            )
        found = next((r for r in evaluation.results if r.name == reference.policy_name), None)
        if found is None:
            raise InvalidRequest(
                f"evaluation {evaluation.id!r} has no policy named {reference.policy_name!r}.",
                target="policyName",
            )
        if found.source in (PolicySource.BASELINE.value, PolicySource.RANDOM.value):
            raise InvalidPolicyConfiguration(
                f"{found.name} is not a learning policy and cannot be applied.", target="policyName"
            )
        await self.commands.call("set_policy", {"name": found.name, "arguments": found.arguments})
