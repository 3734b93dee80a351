"""Schemathesis against a live ``banditd serve``: every operation of its own ``/openapi.json``,
sent with no key, with a client key and with an admin key.

Each case is checked for: no 5xx; a status code the document declares for that operation; a
declared content type; a body and headers matching the declared schema; and, on every 4xx, no
change to the store. The store's fingerprint (counts of decisions, rewards, models and jobs, and
the stored service configuration and policy) is read from the SQLite file, read-only, before and
after each case.

A dead server is a failure too: the harness records the request, restarts the server on the same
file and goes on, so one crash does not hide the findings after it.

Generation is derandomized, so a run is reproducible. ``BANDITD_FUZZ_CASES`` sets the cases per
operation and key mode (half positive, half negative); ``make fuzz-http`` raises it. The module
prints the cases sent per operation and every distinct failure (run with ``-s`` to see them).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import HEALTH_TIMEOUT, BanditServer, free_port

CLIENT_KEY = "fuzz-client-key"
ADMIN_KEY = "fuzz-admin-key"
KEY_HEADER = "Ocp-Apim-Subscription-Key"
MODES: dict[str, str | None] = {"no-key": None, "client-key": CLIENT_KEY, "admin-key": ADMIN_KEY}


@schemathesis.serializer("application/x-ndjson")
def ndjson_body(ctx: Any, value: Any) -> dict[str, Any]:
    """The log import's body: generated text sent as it is (a line per DSJSON event)."""
    del ctx
    if isinstance(value, bytes):
        return {"data": value}
    text = value if isinstance(value, str) else json.dumps(value)
    return {"data": text.encode("utf-8", "surrogatepass")}


CASES = int(os.environ.get("BANDITD_FUZZ_CASES", "24"))
"""Cases per operation and key mode: the default sends about 2,500 cases over the 38 operations
(and reward and activate on a stored event) in 3 modes; fewer where an operation has fewer
distinct inputs, such as ``GET /healthz``."""

REQUEST_TIMEOUT = 10.0
"""Seconds one request may take before it counts as no answer."""

EXIT_GRACE = 2.0
"""Seconds to wait for the server to exit after a request got no answer, before calling the
failure a refused or dropped connection rather than a crash."""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def fingerprint(db: Path) -> dict[str, Any]:
    """What no error response may change, read from the SQLite file without writing to it."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
    try:

        def one(sql: str) -> Any:
            row = conn.execute(sql).fetchone()
            return None if row is None else row[0] if len(row) == 1 else tuple(row)

        return {
            "decisions": one("SELECT count(*) FROM decisions"),
            "rewards": one("SELECT count(*) FROM rewards"),
            "models": one("SELECT count(*) FROM models"),
            "jobs": one("SELECT count(*) FROM jobs"),
            "config": one("SELECT data FROM config"),
            "policy": one("SELECT name, arguments FROM policy"),
        }
    finally:
        conn.close()


@dataclass
class Findings:
    """Cases sent per (mode, operation) and the first example of each distinct failure."""

    cases: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: dict[tuple[str, str], Counter[int]] = field(default_factory=dict)
    failures: dict[tuple[str, str, str, int | None], str] = field(default_factory=dict)
    seen: Counter[tuple[str, str, str, int | None]] = field(default_factory=Counter)

    def record(self, mode: str, label: str, kind: str, status: int | None, detail: str) -> None:
        key = (mode, label, kind, status)
        self.seen[key] += 1
        self.failures.setdefault(key, detail)

    def report(self) -> str:
        lines = [
            "",
            "== cases per operation (no-key / client-key / admin-key), then status×count ==",
        ]
        labels = sorted({label for _, label in self.cases})
        for label in labels:
            counts = [self.cases[(mode, label)] for mode in MODES]
            seen = " | ".join(
                ",".join(f"{s}×{n}" for s, n in sorted(self.statuses.get((m, label), {}).items()))
                for m in MODES
            )
            lines.append(f"{label:50} {' / '.join(f'{n:3}' for n in counts)}   {seen}")
        total = sum(self.cases.values())
        operations = sum("[" not in label for label in labels)
        lines.append(f"{'total':50} {total} cases, {operations} operations")
        lines.append(f"== {len(self.failures)} distinct failures ==")
        for (mode, label, kind, status), detail in sorted(
            self.failures.items(), key=lambda item: (item[0][1], item[0][0], item[0][2])
        ):
            n = self.seen[(mode, label, kind, status)]
            lines.append(f"-- [{mode}] {label}: {kind} (status {status}, {n} cases)")
            lines.append(detail)
        return "\n".join(lines)


def wait_healthy(server: BanditServer) -> None:
    """Poll ``/healthz`` until it answers 200, or fail quoting the log."""
    assert server.proc is not None
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"banditd exited with {server.proc.returncode}:\n{server.log_tail()}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"banditd did not become healthy in {HEALTH_TIMEOUT} s:\n{server.log_tail()}")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BanditServer]:
    """One server with one client key and one admin key, killed when the module ends."""
    root = tmp_path_factory.mktemp("fuzz")
    server = BanditServer(root / "banditd.db", free_port(), root)
    server.configure(client_keys=CLIENT_KEY, admin_keys=ADMIN_KEY)  # type: ignore[arg-type]
    server.start()
    try:
        wait_healthy(server)
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def findings(live: BanditServer) -> Iterator[Findings]:
    found = Findings()
    yield found
    print(found.report())
    print(f"== store at the end: {fingerprint(live.db)} ==")


def _header(response: schemathesis.Response, name: str) -> str | None:
    for key, values in response.headers.items():
        if key.lower() == name:
            return ", ".join(values)
    return None


def _body_text(response: schemathesis.Response) -> str:
    raw = response.content or b""
    text = raw[:300].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > 300 else "")


def run_operation(
    live: BanditServer,
    operation: Any,
    mode: str,
    key: str | None,
    found: Findings,
    path_parameters: dict[str, str] | None = None,
) -> None:
    """Send ``CASES`` generated cases (half positive, half negative) of one operation; given
    ``path_parameters`` (a stored event's id), those are fixed and the label says so."""
    session = requests.Session()
    label = operation.label
    if path_parameters:
        label += " [stored event]"

    def one_case(case: schemathesis.Case) -> None:
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != KEY_HEADER.lower()}
        headers.pop("Authorization", None)
        case.headers = headers
        extra = {KEY_HEADER: key} if key is not None else {}
        curl = case.as_curl_command(headers=extra).replace("[Filtered]", key or "")
        found.cases[(mode, label)] += 1
        before = fingerprint(live.db)
        try:
            response = case.call(session=session, headers=extra, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as exc:
            assert live.proc is not None
            # A dying process may reset the connection a moment before it exits.
            with contextlib.suppress(subprocess.TimeoutExpired):
                live.proc.wait(timeout=EXIT_GRACE)
            dead = live.proc.poll() is not None
            kind = "server died" if dead else f"no answer ({type(exc).__name__})"
            found.record(mode, label, kind, None, f"   {curl}\n{live.log_tail(1500)}")
            if dead:
                live.start()
                wait_healthy(live)
            return
        status = response.status_code
        found.statuses.setdefault((mode, label), Counter())[status] += 1
        summary = (
            f"   {curl}\n   -> {status} {_header(response, 'content-type')}: {_body_text(response)}"
        )
        try:
            case.validate_response(response, checks=CHECKS, headers=extra)
        except FailureGroup as group:
            for failure in group.exceptions:
                found.record(mode, label, _kind(failure), status, summary)
        except Failure as failure:
            found.record(mode, label, _kind(failure), status, summary)
        if 400 <= status < 500:
            after = fingerprint(live.db)
            changed = sorted(name for name in before if before[name] != after[name])
            if changed:
                diff = {name: (before[name], after[name]) for name in changed}
                found.record(
                    mode, label, f"state changed on {status}: {', '.join(changed)}", status,
                    f"{summary}\n   {json.dumps(diff, default=str)[:600]}",
                )  # fmt: skip

    for generation_mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategy = operation.as_strategy(
            generation_mode=generation_mode, path_parameters=path_parameters
        )
        test = settings(
            max_examples=max(1, CASES // 2),
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )(given(case=strategy)(one_case))
        try:
            test()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid form to generate.
            assert generation_mode is GenerationMode.NEGATIVE, label
    session.close()


def _kind(failure: Failure) -> str:
    title = failure.title
    message = " ".join(failure.message.split())[:300]
    return f"{type(failure).__name__}: {title} — {message}"


SEEDED = ("POST /events/{event_id}/reward", "POST /events/{event_id}/activate")
"""Operations fuzzed a second time on an event that exists."""


def seed_event(live: BanditServer, event_id: str) -> None:
    """Rank once with the client key, so ``event_id`` names a stored, deferred decision."""
    body = {
        "eventId": event_id,
        "deferActivation": True,
        "contextFeatures": [{"user": {"type": "fuzz"}}],
        "actions": [{"id": "a", "features": [{"k": "a"}]}, {"id": "b", "features": [{"k": "b"}]}],
    }
    response = requests.post(
        f"{live.url}/v1/rank",
        json=body,
        headers={KEY_HEADER: CLIENT_KEY},
        timeout=REQUEST_TIMEOUT,
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("mode", list(MODES))
def test_every_operation_conforms_and_errors_change_nothing(
    live: BanditServer, findings: Findings, mode: str
) -> None:
    """Every operation in the document, fuzzed in one key mode; the failures are listed."""
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30, [op.label for op in operations]
    # An event that exists, so reward and activate bodies are also fuzzed against a real event
    # (a generated id almost never names one): a rejected reward must not be stored.
    event_id = f"fuzz-seed-{mode}"
    seed_event(live, event_id)
    for operation in operations:
        run_operation(live, operation, mode, MODES[mode], findings)
        if operation.label in SEEDED:
            run_operation(live, operation, mode, MODES[mode], findings, {"event_id": event_id})
    mine = {k: v for k, v in findings.failures.items() if k[0] == mode}
    assert not mine, "\n".join(
        f"[{m}] {label}: {kind} (status {status})\n{detail}"
        for (m, label, kind, status), detail in sorted(mine.items())
    )


METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")
CLIENT_ROLES = ("rank", "reward", "activate")
"""Operation tags of the routes a client key may call (every other route needs the admin key)."""


def test_undeclared_methods_answer_405_with_allow(live: BanditServer) -> None:
    """Every method a path does not declare, in every key mode: 405 with ``Allow`` naming the
    declared methods and Personalizer's error body; where the key does not reach the route, 401
    (no key) or 403 (a client key on an admin route) is accepted instead. Nothing may be a 5xx.
    """
    document = requests.get(f"{live.url}/openapi.json", timeout=REQUEST_TIMEOUT).json()
    problems: list[str] = []
    sent = 0
    with requests.Session() as session:
        for path, item in sorted(document["paths"].items()):
            # A path's own servers (the root, or /v1 alone) replace the prefixed forms.
            prefix = item["servers"][0]["url"].rstrip("/") if item.get("servers") else "/v1"
            url = live.url + prefix + re.sub(r"\{\w+\}", "fuzz", path)
            declared = {m.upper() for m in item if m.upper() in METHODS}
            client_route = any(
                role in op.get("tags", ()) for m, op in item.items() if m.upper() in declared
                for role in CLIENT_ROLES
            )  # fmt: skip
            for method in sorted(set(METHODS) - declared):
                for mode, key in MODES.items():
                    headers = {KEY_HEADER: key} if key is not None else {}
                    response = session.request(
                        method, url, headers=headers, timeout=REQUEST_TIMEOUT
                    )
                    sent += 1
                    allowed = {405}
                    if key is None and not _open_route(path):
                        allowed.add(401)
                    if key == CLIENT_KEY and not client_route and not _open_route(path):
                        allowed.add(403)
                    where = f"[{mode}] {method} {prefix}{path} -> {response.status_code}"
                    if response.status_code not in allowed:
                        problems.append(f"{where}: expected {sorted(allowed)}")
                        continue
                    if response.status_code == 405:
                        allow = {
                            m.strip().upper() for m in response.headers.get("Allow", "").split(",")
                        } - {"", "HEAD", "OPTIONS"}
                        if allow != declared:
                            problems.append(f"{where}: Allow {sorted(allow)} != {sorted(declared)}")
                    try:
                        error = response.json()["error"]
                        assert isinstance(error["code"], str) and isinstance(error["message"], str)
                    except (ValueError, KeyError, TypeError, AssertionError):
                        problems.append(
                            f"{where}: not Personalizer's error body: {response.text!r}"
                        )
    print(f"\n== undeclared methods: {sent} requests, {len(problems)} problems ==")
    print("\n".join(problems))
    assert sent > 0
    assert not problems, "\n".join(problems)


def _open_route(path: str) -> bool:
    """Routes that need no key (``/healthz``, ``/openapi.json``, the dashboard's page)."""
    return path in ("/healthz", "/openapi.json") or path.startswith("/dashboard")
