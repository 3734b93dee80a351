"""Configuration, policy, model and log operations (the Personalizer administration surface).

Handlers decode with :mod:`server.api.contracts`, read the edge's cache and the store, queue the
changes the trainer carries out (:mod:`server.serving.commands`), and encode; errors are raised
as :class:`bandit.errors.BanditError` and mapped by the request edge (:mod:`server.api.edge`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from bandit.config import from_wire, to_wire
from bandit.dsjson import iso_time
from bandit.errors import (
    InvalidModelImportFormat,
    InvalidPolicyConfiguration,
    InvalidRequest,
    InvalidServiceConfiguration,
    PayloadSizeExceeded,
)
from bandit.events import PolicySettings
from policies import validate_arguments
from server.api import contracts as c
from server.api.base import COMMANDS, SERVICE, json_response
from server.api.operations import JSON, OCTETS, Operation, Response, declare, decode, mount
from server.serving import model_archive
from server.serving.commands import Commands
from server.serving.service import Service
from server.trainer.apprentice import ApprenticeTracker
from server.trainer.records import CONFIG_EDITED_KEY, MODEL_CREATED_KEY

_ERROR = c.ErrorResponse


def _commands(request: web.Request) -> Commands:
    return request.app[COMMANDS]


def _time(at: float | None) -> str | None:
    return iso_time(at) if at is not None else None


# -- service configuration ---------------------------------------------------------------------


def configuration_body(service: Service) -> dict[str, Any]:
    """The ServiceConfiguration as served: settings, edit date, apprentice metrics (as the
    trainer last stored them, every second). Store reads: call it off the event loop."""
    body = to_wire(service.config)
    edited = _time(service.store.get_time(CONFIG_EDITED_KEY))
    if edited:
        body["lastConfigurationEditDate"] = edited
    body["isAutoOptimizationEnabled"] = False
    body["logMirrorEnabled"] = False
    apprentice = ApprenticeTracker(service.store).to_wire(
        service.config.apprentice_graduation_min_events
    )
    if apprentice is not None:
        body["latestApprenticeModeMetrics"] = apprentice
    return body


async def get_configuration(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(configuration_body, request.app[SERVICE]))


async def put_configuration(request: web.Request) -> web.Response:
    """Merge the body (the whole configuration, or part of it) onto the current one."""
    body = await request.read()
    contract = decode(body, c.ServiceConfigurationUpdate, InvalidServiceConfiguration)
    if contract.log_mirror_enabled:
        raise InvalidServiceConfiguration(
            "log mirroring is not supported; export logs with GET /v1/logs/export instead.",
            target="logMirrorEnabled",
        )
    if contract.is_auto_optimization_enabled:
        raise InvalidServiceConfiguration(
            "auto-optimization is not supported; run an evaluation with policy optimization "
            "and apply its result instead.",
            target="isAutoOptimizationEnabled",
        )
    service = request.app[SERVICE]
    new = from_wire(msgspec.to_builtins(contract), base=service.config, require_all=False)
    service.config.check_change(new)  # the trainer checks again against what it holds
    await _commands(request).call("configure", to_wire(new))
    return json_response(await asyncio.to_thread(configuration_body, service))


# -- learning policy ---------------------------------------------------------------------------


def policy_body(policy: PolicySettings) -> dict[str, str]:
    """The PolicyContract of a policy."""
    return {"name": policy.name, "arguments": policy.arguments}


async def get_policy(request: web.Request) -> web.Response:
    return json_response(policy_body(request.app[SERVICE].policy_settings))


async def put_policy(request: web.Request) -> web.Response:
    contract = decode(await request.read(), c.PolicyContract, InvalidPolicyConfiguration)
    validate_arguments(contract.arguments)
    body = {"name": contract.name, "arguments": contract.arguments}
    return json_response(await _commands(request).call("set_policy", body))


async def delete_policy(request: web.Request) -> web.Response:
    return json_response(await _commands(request).call("reset_policy"))


# -- model -------------------------------------------------------------------------------------


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in {"true", "false"}:
        raise InvalidRequest(f"{name} must be true or false.", target=name)
    return value == "true"


def export_model(service: Service, signed: bool) -> bytes:
    """The serving model's VW bytes, or a signed archive of them (store reads)."""
    store = service.store
    record = store.get_model(service.serving.version) or store.latest_model()
    if record is None:
        raise InvalidModelImportFormat("no model has been published yet.")
    if not signed:
        return record.data
    metadata = model_archive.ModelMetadata(
        name=service.policy_settings.name,
        arguments=record.arguments,
        version=record.version,
        created_at=record.created_at,
    )
    key = model_archive.signing_key(store, service.settings.model_signing_key)
    return model_archive.sign(record.data, metadata, key)


async def get_model(request: web.Request) -> web.Response:
    signed = _flag(request, "signed")
    data = await asyncio.to_thread(export_model, request.app[SERVICE], signed)
    return web.Response(body=data, headers={"Content-Type": OCTETS})


async def put_model(request: web.Request) -> web.Response:
    limit = request.app[SERVICE].settings.max_model_bytes
    data = await request.content.read(limit + 1)
    if len(data) > limit:
        raise PayloadSizeExceeded(f"a model may be at most {limit} bytes.")
    await _commands(request).call("import_model", raw=data)
    return web.Response(status=204)


async def delete_model(request: web.Request) -> web.Response:
    await _commands(request).call("reset_model")
    return web.Response(status=204)


async def get_model_properties(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    created = _time(await asyncio.to_thread(service.store.get_time, MODEL_CREATED_KEY))
    return json_response(
        {"creationTime": created, "lastModifiedTime": iso_time(service.serving.created_at)}
    )


# -- logs --------------------------------------------------------------------------------------


async def delete_logs(request: web.Request) -> web.Response:
    await _commands(request).call("delete_logs")
    return web.Response(status=204)


async def get_logs_properties(request: web.Request) -> web.Response:
    found = await asyncio.to_thread(request.app[SERVICE].store.log_range)
    first, last = found if found is not None else (None, None)
    return json_response(
        {
            "dateRange": {
                "from": iso_time(first) if first is not None else None,
                "to": iso_time(last) if last is not None else None,
            }
        }
    )


_OK_CONFIG = Response(
    status=200, description="The service configuration.", body=c.ServiceConfiguration
)
_OK_POLICY = Response(status=200, description="The learning policy.", body=c.PolicyContract)
_NO_CONTENT = Response(status=204, description="Done.")
_BAD = Response(status=400, description="The request is invalid.", body=_ERROR)

OPERATIONS = declare(
    Operation(
        id="getServiceConfiguration",
        role="configuration",
        method="GET",
        path="/configurations/service",
        handler=get_configuration,
        summary="Get the service configuration.",
        responses=(_OK_CONFIG,),
    ),
    Operation(
        id="updateServiceConfiguration",
        role="configuration",
        method="PUT",
        path="/configurations/service",
        handler=put_configuration,
        summary="Update the service configuration (fields left out keep their values); reward "
        "or exploration changes reset the model and retrain it from the logs of the last "
        "modelRetrainDays.",
        body=c.ServiceConfigurationUpdate,
        responses=(_OK_CONFIG, _BAD),
    ),
    Operation(
        id="getPolicy",
        role="policy",
        method="GET",
        path="/configurations/policy",
        handler=get_policy,
        summary="Get the learning policy.",
        responses=(_OK_POLICY,),
    ),
    Operation(
        id="updatePolicy",
        role="policy",
        method="PUT",
        path="/configurations/policy",
        handler=put_policy,
        summary="Set the learning policy (a VW --cb_explore_adf command line); resets and "
        "retrains the model.",
        body=c.PolicyContract,
        responses=(_OK_POLICY, _BAD),
    ),
    Operation(
        id="resetPolicy",
        role="policy",
        method="DELETE",
        path="/configurations/policy",
        handler=delete_policy,
        summary="Reset the learning policy to the default.",
        responses=(_OK_POLICY,),
    ),
    Operation(
        id="getModel",
        role="model",
        method="GET",
        path="/model",
        handler=get_model,
        summary="Export the serving model: VW bytes, or a signed archive with signed=true.",
        query={"signed": (bool, False, "Return a signed archive that PUT /model accepts.")},
        responses=(Response(status=200, description="The model.", body=bytes, media=OCTETS),),
    ),
    Operation(
        id="importModel",
        role="model",
        method="PUT",
        path="/model",
        handler=put_model,
        summary="Import a signed model archive (as exported with signed=true).",
        body=bytes,
        responses=(_NO_CONTENT, _BAD),
    ),
    Operation(
        id="resetModel",
        role="model",
        method="DELETE",
        path="/model",
        handler=delete_model,
        summary="Reset the model to a fresh one.",
        responses=(_NO_CONTENT,),
    ),
    Operation(
        id="getModelProperties",
        role="model",
        method="GET",
        path="/model/properties",
        handler=get_model_properties,
        summary="Creation and last-modified time of the model.",
        responses=(Response(status=200, description="Model times.", body=c.ModelProperties),),
    ),
    Operation(
        id="deleteLogs",
        role="logs",
        method="DELETE",
        path="/logs",
        handler=delete_logs,
        summary="Delete every logged event the learner has learned.",
        responses=(_NO_CONTENT,),
    ),
    Operation(
        id="getLogsProperties",
        role="logs",
        method="GET",
        path="/logs/properties",
        handler=get_logs_properties,
        summary="The date range of the logged events.",
        responses=(Response(status=200, description="Log range.", body=c.LogsProperties),),
    ),
)


def add_admin_routes(app: web.Application) -> None:
    """Mount the administration surface (configuration, policy, model, logs)."""
    mount(app, OPERATIONS)


__all__ = ["JSON", "OPERATIONS", "add_admin_routes"]
