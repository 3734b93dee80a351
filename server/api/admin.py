"""Configuration, policy, model and log operations (the Personalizer administration surface).

Handlers decode with :mod:`server.api.contracts`, call
:class:`server.trainer.control.LoopControl`, and encode; errors are raised as
:class:`bandit.errors.BanditError` and mapped by the request edge (:mod:`server.api.edge`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from bandit.config import from_wire, to_wire
from bandit.dsjson import iso_time
from bandit.errors import (
    InvalidPolicyConfiguration,
    InvalidRequest,
    InvalidServiceConfiguration,
    PayloadSizeExceeded,
)
from bandit.events import PolicySettings
from server.api import contracts as c
from server.api.base import CONTROL, SERVICE, json_response
from server.api.operations import JSON, OCTETS, Operation, Response, declare, decode, mount
from server.trainer.control import CONFIG_EDITED_KEY, MODEL_CREATED_KEY, LoopControl

_ERROR = c.ErrorResponse


def _control(request: web.Request) -> LoopControl:
    return request.app[CONTROL]


def _time(at: float | None) -> str | None:
    return iso_time(at) if at is not None else None


# -- service configuration ---------------------------------------------------------------------


def configuration_body(control: LoopControl) -> dict[str, Any]:
    """The ServiceConfiguration as served: settings, edit date, apprentice metrics."""
    body = to_wire(control.service.config)
    edited = _time(control.service.store.get_time(CONFIG_EDITED_KEY))
    if edited:
        body["lastConfigurationEditDate"] = edited
    body["isAutoOptimizationEnabled"] = False
    body["logMirrorEnabled"] = False
    metrics = control.apprentice.to_wire(control.service.config.apprentice_graduation_min_events)
    if metrics is not None:
        body["latestApprenticeModeMetrics"] = metrics
    return body


async def get_configuration(request: web.Request) -> web.Response:
    return json_response(configuration_body(_control(request)))


async def put_configuration(request: web.Request) -> web.Response:
    control = _control(request)
    contract = decode(await request.read(), c.ServiceConfiguration, InvalidServiceConfiguration)
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
    new = from_wire(msgspec.to_builtins(contract), base=control.service.config)
    await control.update_config(new)
    return json_response(configuration_body(control))


# -- learning policy ---------------------------------------------------------------------------


def policy_body(policy: PolicySettings) -> dict[str, str]:
    """The PolicyContract of a policy."""
    return {"name": policy.name, "arguments": policy.arguments}


async def get_policy(request: web.Request) -> web.Response:
    return json_response(policy_body(request.app[SERVICE].policy_settings))


async def put_policy(request: web.Request) -> web.Response:
    contract = decode(await request.read(), c.PolicyContract, InvalidPolicyConfiguration)
    policy = PolicySettings(name=contract.name, arguments=contract.arguments)
    return json_response(policy_body(await _control(request).set_policy(policy)))


async def delete_policy(request: web.Request) -> web.Response:
    return json_response(policy_body(await _control(request).reset_policy()))


# -- model -------------------------------------------------------------------------------------


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in {"true", "false"}:
        raise InvalidRequest(f"{name} must be true or false.", target=name)
    return value == "true"


async def get_model(request: web.Request) -> web.Response:
    data = _control(request).export_model(_flag(request, "signed"))
    return web.Response(body=data, headers={"Content-Type": OCTETS})


async def put_model(request: web.Request) -> web.Response:
    control = _control(request)
    limit = control.service.settings.max_model_bytes
    data = await request.content.read(limit + 1)
    if len(data) > limit:
        raise PayloadSizeExceeded(f"a model may be at most {limit} bytes.")
    await control.import_model(data)
    return web.Response(status=204)


async def delete_model(request: web.Request) -> web.Response:
    await _control(request).reset_model()
    return web.Response(status=204)


async def get_model_properties(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    created = _time(service.store.get_time(MODEL_CREATED_KEY))
    return json_response(
        {"creationTime": created, "lastModifiedTime": iso_time(service.serving.created_at)}
    )


# -- logs --------------------------------------------------------------------------------------


async def delete_logs(request: web.Request) -> web.Response:
    await _control(request).delete_logs()
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
        summary="Update the service configuration; reward or exploration changes reset the "
        "model and retrain it from the logs of the last modelRetrainDays.",
        body=c.ServiceConfiguration,
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
