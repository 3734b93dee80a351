"""``POST /v1/logs/import`` and ``banditd import``: counts, idempotence, all or nothing on a bad
line, the errors of the endpoint, and bounded memory on a 100,000-line file streamed to a real
edge process while a real trainer learns what it stores."""

from __future__ import annotations

import asyncio
import io
import json
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.config import LearningMode
from bandit.errors import InvalidImportLogsRequest
from bandit.events import JoinedEvent
from server.api.base import SERVICE
from server.api.logs import IMPORT_BATCH, MAX_LINE_BYTES, LogSpool, log_line, read_logs
from server.entry.app import create_app
from server.entry.cli import main
from server.entry.settings import Settings
from stores.postgres.store import PostgresStore
from stores.sqlite.store import SQLiteStore
from tests import pg
from tests.e2e.conftest import HOST, ROOT, Process, free_port, until_healthy
from tests.server import world
from tests.server.test_api import expect_error

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
ADMIN = {"Ocp-Apim-Subscription-Key": "admin", "Content-Type": "application/x-ndjson"}
CLIENT = {"Ocp-Apim-Subscription-Key": "client", "Content-Type": "application/x-ndjson"}
T0 = 1_700_000_000.0
N = IMPORT_BATCH + 500
"""Events of the small files: more than one store write, so all-or-nothing is tested across
batches."""
SETTLE_TIMEOUT = 30.0
"""Seconds an in-process trainer may take to learn a few imported events."""


def lines_of(events: list[JoinedEvent]) -> bytes:
    return "".join(log_line(e) + "\n" for e in events).encode()


@pytest.fixture(params=["sqlite", "postgres"])
async def client(
    request: pytest.FixtureRequest, aiohttp_client: MakeClient, tmp_path: Path
) -> AsyncIterator[Client]:
    """A server with both roles on a store of the kind the parameter names."""
    given_settings = Settings(
        db=str(tmp_path / "import.db"),
        admin_keys=("admin",),
        client_keys=("client",),
        import_max_bytes=8 << 20,
    )
    if request.param == "sqlite":
        yield await aiohttp_client(create_app(given_settings))
        return
    with pg.fresh_schema("import") as schema:
        store = PostgresStore(pg.URL, schema=schema)
        made = await aiohttp_client(create_app(given_settings, store))
        yield made
        await made.close()  # before the schema is dropped


def stored(client: Client) -> list[JoinedEvent]:
    return client.app[SERVICE].store.joined_after(0, 100_000)


async def chunks(data: bytes, size: int = 7001) -> AsyncIterator[bytes]:
    """``data`` as a chunked body, cut in the middle of lines."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_import_counts_and_a_second_import_skips_everything(client: Client) -> None:
    events = world.draw(N, seed=20, start=T0).events
    body = lines_of(events)
    first = await client.post("/v1/logs/import", data=chunks(body), headers=ADMIN)
    assert first.status == 200, await first.text()
    assert await first.json() == {"imported": N, "skipped": 0}
    # A file overlapping what is stored, with a repeat of a new event and blank lines: only
    # the new events are stored, once (under a Personalizer prefix, with Content-Length).
    more = world.draw(10, seed=21, start=T0 + N).events
    again = await client.post(
        "/personalizer/v1.1-preview.3/logs/import",
        data=lines_of(events[:100] + more + more[:1]) + b"\n\n",
        headers=ADMIN,
    )
    assert await again.json() == {"imported": 10, "skipped": 101}
    repeat = await client.post("/v1/logs/import", data=chunks(body), headers=ADMIN)
    assert await repeat.json() == {"imported": 0, "skipped": N}
    found = stored(client)
    assert [e.decision.event_id for e in found] == [e.decision.event_id for e in [*events, *more]]
    assert [e.seq for e in found] == list(range(1, N + 11))
    assert found[7].reward == events[7].reward
    assert [a.id for a in found[7].decision.request.actions] == ["a0", "a1", "a2"]
    assert found[7].decision.chosen_index == events[7].decision.chosen_index
    assert {e.decision.learning_mode for e in found} == {LearningMode.ONLINE}


async def test_import_as_apprentice(client: Client) -> None:
    events = world.draw(5, seed=22, start=T0).events
    response = await client.post(
        "/v1/logs/import?mode=Apprentice", data=lines_of(events), headers=ADMIN
    )
    assert await response.json() == {"imported": 5, "skipped": 0}
    assert {e.decision.learning_mode for e in stored(client)} == {LearningMode.APPRENTICE}
    # The trainer learns them and counts them in its apprentice totals (the edge wrote none).
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        config = await client.get("/v1/configurations/service", headers=ADMIN)
        metrics = (await config.json()).get("latestApprenticeModeMetrics", {})
        if metrics.get("numberOfEvents") == 5:
            break
        assert time.monotonic() < deadline, metrics
        await asyncio.sleep(0.1)
    assert metrics["sumOfRewards"] == sum(e.reward for e in events)


async def test_a_bad_line_anywhere_imports_nothing(client: Client) -> None:
    good = lines_of(world.draw(N, seed=23, start=T0).events).splitlines(keepends=True)
    for bad, number, reason in (
        (b"{not json\n", N - 2, "not labelled DSJSON: "),
        (b'{"c": {"_multi": []}, "_label_cost": 0, "_label_probability": 1}\n', N, "no '_multi'"),
        (b"\xff\xfe\n", 3, "not labelled DSJSON: 'utf-8' codec"),
        (damaged(good[0], EventId=""), N, "EventId must be a non-empty string"),
        (damaged(good[0], EventId="x\x00"), 2, "EventId must not contain the NUL"),
        (damaged(good[0], _label_cost=float("nan")), 5, "not a finite number"),
        (damaged(good[0], p=[0.5, 0.5, 1.5]), 5, "not a number in [0, 1]"),
        (damaged(good[0], actions=["a0", "a0", "a2"]), 7, "an action _id is repeated"),
        # Features VW's parser refuses: stored, they would stop the learner at this event.
        (damaged(good[0], user={"kind": ["k1", "k2"]}), N + 1, "not readable by the learner"),
    ):
        body = b"".join([*good[: number - 1], bad, *good[number - 1 :]])
        response = await client.post("/v1/logs/import", data=chunks(body), headers=ADMIN)
        await expect_error(response, 400, "BadRequest", "InvalidImportLogsRequest")
        message = (await response.json())["error"]["message"]
        assert message.startswith(f"line {number}: "), message
        assert reason in message, message
        assert message.endswith("; nothing was imported."), message
        assert stored(client) == []


def damaged(line: bytes, **changes: Any) -> bytes:
    """``line`` with top-level fields, the ``user`` context namespace or the actions' ids
    (``actions``) replaced."""
    obj = json.loads(line)
    for key, value in changes.items():
        if key == "user":
            obj["c"]["user"] = value
        elif key == "actions":
            for entry, action_id in zip(obj["c"]["_multi"], value, strict=True):
                entry["_id"] = action_id
        else:
            obj[key] = value
    return json.dumps(obj).encode() + b"\n"


async def test_unknown_mode_lists_the_valid_ones(client: Client) -> None:
    response = await client.post(
        "/v1/logs/import?mode=LoggingOnly", data=lines_of([]), headers=ADMIN
    )
    await expect_error(response, 400, "BadRequest", "InvalidImportLogsRequest")
    error = (await response.json())["error"]
    assert error["target"] == "mode"
    assert "Online, Apprentice" in error["message"]


async def test_a_client_key_is_refused(client: Client) -> None:
    events = world.draw(3, seed=24, start=T0).events
    response = await client.post("/v1/logs/import", data=lines_of(events), headers=CLIENT)
    await expect_error(response, 403, "Forbidden", "InvalidApiAccess")
    assert stored(client) == []


async def test_a_body_over_import_max_bytes_is_413_and_imports_nothing(client: Client) -> None:
    limit = client.app[SERVICE].settings.import_max_bytes
    line = log_line(world.draw(1, seed=25, start=T0).events[0]).encode() + b"\n"
    body = line * (limit // len(line) + 1)
    declared = await client.post(
        "/v1/logs/import",
        data=io.BytesIO(body),
        headers={**ADMIN, "Content-Length": str(len(body))},
    )
    await expect_error(declared, 413, "BadRequest", "PayloadSizeExceeded")
    assert "import_max_bytes" in (await declared.json())["error"]["message"]
    streamed = await client.post("/v1/logs/import", data=chunks(body, 1 << 16), headers=ADMIN)
    await expect_error(streamed, 413, "BadRequest", "PayloadSizeExceeded")
    assert stored(client) == []


async def test_a_line_over_the_bound_is_400(client: Client) -> None:
    good = lines_of(world.draw(2, seed=26, start=T0).events)
    body = good + b" " * (MAX_LINE_BYTES + 1) + b"\n"
    response = await client.post("/v1/logs/import", data=chunks(body, 1 << 16), headers=ADMIN)
    await expect_error(response, 400, "BadRequest", "InvalidImportLogsRequest")
    assert (await response.json())["error"]["message"] == (
        f"line 3: longer than {MAX_LINE_BYTES} bytes; nothing was imported."
    )
    assert stored(client) == []


def test_the_cli_imports_nothing_from_a_file_with_a_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = lines_of(world.draw(N, seed=27, start=T0).events)
    source = tmp_path / "late-error.dsjson"
    source.write_bytes(good + b"{not json\n")
    db = tmp_path / "cli.db"
    assert main(["import", "--db", str(db), str(source)]) == 1
    assert f"line {N + 1}: not labelled DSJSON: " in capsys.readouterr().err
    store = SQLiteStore(db)
    try:
        assert store.joined_after(0, 10) == []
    finally:
        store.close()
    # The same file without its bad line, piped to a banditd process's stdin, twice.
    for expected in ({"imported": N, "skipped": 0}, {"imported": 0, "skipped": N}):
        done = subprocess.run(
            [sys.executable, "-m", "server.entry.cli", "import", "--db", str(db), "-", "--json"],
            input=good,
            capture_output=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == expected


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
LINE = json.loads(log_line(world.draw(1, seed=29, start=T0).events[0]))
FIELDS = [*LINE, *LINE["c"], "_labelIndex", "_label_Action"]
"""The fields of a labelled line and of its context, and the other label fields."""


@given(
    changes=st.lists(
        st.tuples(
            st.sampled_from([*LINE, *LINE["c"], "_labelIndex", "_label_Action"]), JSON_VALUES
        ),
        min_size=1,
        max_size=3,
    )
)
@settings(max_examples=300, deadline=None)
def test_any_damaged_line_is_imported_or_refused_naming_it(
    changes: list[tuple[str, Any]],
) -> None:
    """A labelled line with fields replaced by arbitrary JSON either reads into an event a rank
    and a reward could have made, or is refused as line 2 (never another error, a 500)."""
    damaged = json.loads(json.dumps(LINE))
    for key, value in changes:
        target = damaged if key in LINE or key.startswith("_label") else damaged["c"]
        if isinstance(target, dict):  # not if "c" itself was replaced
            target[key] = value
    with LogSpool() as spool:
        spool.write(b"\n" + json.dumps(damaged).encode() + b"\n")
        try:
            events = list(read_logs(spool, LearningMode.ONLINE))
        except InvalidImportLogsRequest as exc:
            assert exc.message.startswith("line 2: "), exc.message
            return
    ((number, event),) = events
    assert number == 2
    assert math.isfinite(event.reward) and 0 < len(event.decision.event_id) <= 256
    assert all(0 <= p <= 1 for p in event.decision.pmf)
    assert 0 <= event.decision.chosen_index < len(event.decision.request.actions)


# -- a real edge and trainer ----------------------------------------------------------------------

BULK = 100_000
"""Lines of the large file."""
GROWTH_BOUND = 16 << 20
"""Most the edge's peak resident memory (VmHWM) may grow while it takes the large file: a third
of the file's size (48 MB), so the body is never held whole (measured: about 7 MB)."""
LEARN_TIMEOUT = 240.0
"""Seconds the trainer may take to learn the 100,000 imported events on a loaded machine."""
IMPORT_TIMEOUT = 600.0


def bulk_lines(n: int, prefix: str) -> Iterator[bytes]:
    """``n`` distinct DSJSON lines (one event each) from a few drawn events, new ids each."""
    template = [log_line(e) for e in world.draw(50, seed=28, start=T0).events]
    for i in range(n):
        line = template[i % len(template)]
        original = json.loads(line)["EventId"]
        yield line.replace(f'"EventId":"{original}"', f'"EventId":"{prefix}-{i}"').encode() + b"\n"


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


async def stream_file(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(1 << 16):
            yield block


@pytest.mark.slow
async def test_a_100k_line_import_streams_in_bounded_memory_and_is_learned(
    tmp_path: Path,
) -> None:
    bulk = tmp_path / "bulk.dsjson"
    with bulk.open("wb") as out:
        out.writelines(bulk_lines(BULK, "bulk"))
    warm = tmp_path / "warm.dsjson"
    with warm.open("wb") as out:
        out.writelines(bulk_lines(IMPORT_BATCH * 2, "warm"))
    size = bulk.stat().st_size
    db, port = tmp_path / "bulk.db", free_port()
    config = tmp_path / "banditd.toml"
    # Tight body limits: the 48 MB body must arrive within 5 s plus 1 s per MiB received, which
    # it does only if the edge reads it as it comes, whatever the import then takes.
    config.write_text(
        "learn_interval = 0.05\nadmin_keys = ['admin']\nbody_timeout = 5\n"
        f"body_min_rate = {1 << 20}\n"
    )
    common = ["--db", str(db), "--config", str(config)]
    trainer = Process("trainer", ["train", *common], tmp_path / "trainer.log")
    edge = Process(
        "edge",
        ["serve", "--role", "edge", *common, "--host", HOST, "--port", str(port)],
        tmp_path / "edge.log",
    )
    url = f"http://{HOST}:{port}"
    headers = {"Ocp-Apim-Subscription-Key": "admin", "Content-Type": "application/x-ndjson"}
    timeout = aiohttp.ClientTimeout(total=IMPORT_TIMEOUT)
    try:
        trainer.start()
        edge.start()
        async with aiohttp.ClientSession(timeout=timeout) as http:
            assert edge.proc is not None
            await until_healthy(http, url, edge.proc, edge.tail, "edge")

            async def post(path: Path) -> Any:
                async with http.post(
                    f"{url}/v1/logs/import", data=stream_file(path), headers=headers
                ) as response:
                    assert response.status == 200, await response.text()
                    return await response.json()

            # A first, small import loads every code path the large one takes.
            assert await post(warm) == {"imported": IMPORT_BATCH * 2, "skipped": 0}
            before, started = peak_rss(edge.proc.pid), time.monotonic()
            assert await post(bulk) == {"imported": BULK, "skipped": 0}
            growth, seconds = peak_rss(edge.proc.pid) - before, time.monotonic() - started
            print(f"file {size} bytes, {BULK} lines, {seconds:.1f} s; VmHWM grew {growth} bytes")
            assert size > 2 * GROWTH_BOUND, size
            assert growth < GROWTH_BOUND, (growth, size)

            total = BULK + IMPORT_BATCH * 2
            deadline = time.monotonic() + LEARN_TIMEOUT
            while True:
                async with http.get(f"{url}/healthz") as response:
                    learner = (await response.json())["learner"]
                if learner["cursor"] == total:
                    break
                assert time.monotonic() < deadline, (learner, trainer.tail())
                await asyncio.sleep(0.5)
        assert edge.terminate() == 0, edge.tail()
        assert trainer.terminate() == 0, trainer.tail()
    finally:
        edge.kill()
        trainer.kill()
    store = SQLiteStore(db)
    try:
        checkpoint = store.load_checkpoint()
        assert store.last_seq() == BULK + IMPORT_BATCH * 2
    finally:
        store.close()
    assert checkpoint is not None
    assert checkpoint.cursor == checkpoint.learned_count == BULK + IMPORT_BATCH * 2
