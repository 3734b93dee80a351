"""DSJSON export and import: VW reads exported lines back into the same labelled examples, and
export → ``banditd import`` → ``banditd export`` gives the same lines."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import vowpal_wabbit_next as vw
from aiohttp import web
from aiohttp.test_utils import TestClient

from bandit.config import LearningMode
from bandit.dsjson import iso_time, joined_line
from bandit.events import JoinedEvent
from server.api.base import SERVICE
from server.entry.app import create_app
from server.entry.cli import main
from server.entry.settings import Settings
from stores.sqlite.store import SQLiteStore
from tests.server import world
from tests.server.test_api import expect_error, rank_body

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
T0 = 1_700_000_000.0


@pytest.fixture
async def client(aiohttp_client: MakeClient, tmp_path: Path) -> Client:
    made = await aiohttp_client(create_app(Settings(db=str(tmp_path / "logs.db"))))
    store = made.app[SERVICE].store
    store.import_joined(world.draw(600, seed=4, start=T0).events)
    # two events through the real rank path: one with an excluded action, one defaulted
    for event_id, extra in (("live-1", {"excludedActions": ["a1"]}), ("live-2", {})):
        assert (await made.post("/v1/rank", json=rank_body(event_id, **extra))).status == 201
    decisions = [store.get_decision(e) for e in ("live-1", "live-2")]
    store.append_joined(
        [
            JoinedEvent(decision=d, reward=r, reward_count=c, defaulted=not c, joined_at=T0)
            for d, r, c in zip(decisions, (0.5, 0.0), (1, 0), strict=True)
            if d is not None
        ]
    )
    return made


def examples(workspace: vw.Workspace[Any], line: str) -> list[Any]:
    """A parsed multi-line example as comparable values: labels and feature groups."""
    parser = vw.DSJsonFormatParser(workspace)
    return [
        (
            repr(e.get_label()),
            [(g, list(e[g].indices), list(e[g].values)) for g in e.feat_group_indices],
        )
        for e in parser.parse_json(line)
    ]


async def test_export_reads_back_into_the_same_labelled_examples(client: Client) -> None:
    response = await client.get("/v1/logs/export")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = (await response.text()).splitlines()
    store = client.app[SERVICE].store
    stored = store.joined_after(0, 10_000)
    assert len(lines) == len(stored) == 602
    workspace = vw.Workspace(["--cb_explore_adf", "--quiet"])
    for line, event in zip(lines, stored, strict=True):
        got = examples(workspace, line)
        assert got == examples(workspace, joined_line(event))
        label = got[1 + event.decision.chosen_index][0]
        assert f"{event.decision.propensity:g}"[:5] in label
    live = json.loads(lines[-2])
    assert [m["_id"] for m in live["c"]["_multi"]] == ["a0", "a1", "a2"]
    assert live["p"][live["a"].index(2)] == 0.0  # the excluded action, logged at 0
    assert json.loads(lines[-1])["o"] == []  # defaulted


async def test_export_window_and_errors(client: Client) -> None:
    window = f"from={iso_time(T0 + 100)}&to={iso_time(T0 + 110)}"
    response = await client.get(f"/personalizer/logs/export?api-version=x&{window}")
    assert len((await response.text()).splitlines()) == 10
    bad = f"from={iso_time(T0 + 10)}&to={iso_time(T0)}"
    await expect_error(
        await client.get(f"/v1/logs/export?{bad}"), 400, "BadRequest", "InvalidExportLogsRequest"
    )
    await expect_error(
        await client.get("/v1/logs/export?from=soon"),
        400,
        "BadRequest",
        "InvalidExportLogsRequest",
    )


async def test_export_import_export_round_trip(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = (await (await client.get("/v1/logs/export")).text()).splitlines()
    exported = tmp_path / "logs.dsjson"
    exported.write_text("\n".join(first) + "\n\n")
    fresh = tmp_path / "fresh.db"
    assert main(["import", "--db", str(fresh), str(exported), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"imported": 602, "skipped": 0}
    assert main(["import", "--db", str(fresh), str(exported), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"imported": 0, "skipped": 602}
    again = tmp_path / "again.dsjson"
    assert main(["export", "--db", str(fresh), "--out", str(again), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["exported"] == 602
    second = again.read_text().splitlines()
    assert [json.loads(x) for x in second] == [json.loads(x) for x in first]
    store = SQLiteStore(fresh)
    imported = store.joined_after(0, 1)[0]
    assert imported.decision.request.actions[0].id == "a0"
    store.close()


def test_import_into_apprentice_and_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [joined_line(e) for e in world.draw(5, seed=9, start=T0).events]
    source = tmp_path / "in.dsjson"
    source.write_text("\n".join(lines))
    db = tmp_path / "ap.db"
    assert main(["import", "--db", str(db), "--mode", "Apprentice", str(source)]) == 0
    store = SQLiteStore(db)
    assert {e.decision.learning_mode for e in store.joined_after(0, 10)} == {
        LearningMode.APPRENTICE
    }
    store.close()
    broken = tmp_path / "broken.dsjson"
    broken.write_text(lines[0] + "\n{not json\n")
    assert main(["import", "--db", str(tmp_path / "b.db"), str(broken)]) == 1
    assert "line 2" in capsys.readouterr().err
    assert main(["export", "--db", str(db), "--out", "-", "--from", "later"]) == 2
