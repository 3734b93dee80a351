"""The README's Python and quick-start examples, run against a live banditd: what a new user
copies first must work as shown."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from pathlib import Path

import aiohttp

from server.client import Client
from tests.e2e.conftest import BanditServer, free_port

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEFAULT_URL = "http://127.0.0.1:8080"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def test_the_readme_shows_a_python_example_and_the_partial_configuration_body() -> None:
    assert any("from server.client import Client" in block for block in _blocks("python"))
    assert '{"rewardWaitTime": "PT30S", "modelExportFrequency": "PT30S"}' in README


async def test_the_readme_python_example_and_partial_configuration_run(tmp_path: Path) -> None:
    server = BanditServer(tmp_path / "banditd.db", free_port(), tmp_path)
    server.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            await server.wait_healthy(http)
            # The quick start's partial PUT: only the two windows change.
            body = json.loads(
                re.search(r"`(\{\"rewardWaitTime\": \"PT30S\"[^`]*\})`", README).group(1)  # type: ignore[union-attr]
            )
            async with http.put(f"{server.url}/v1/configurations/service", json=body) as response:
                assert response.status == 200, await response.text()
                answer = await response.json()
            assert answer["rewardWaitTime"] == "PT30S"
            assert answer["modelExportFrequency"] == "PT30S"
            assert answer["explorationPercentage"] == 0.2  # untouched
        for block in _blocks("python"):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block.replace(DEFAULT_URL, server.url), "README.md", "exec"), {})
            chosen, probabilities = out.getvalue().split(" ", 1)
            assert chosen in {"news", "sports"}, out.getvalue()
            assert "'news'" in probabilities and "'sports'" in probabilities, probabilities
        # The trainer's report counts the decision and its reward within a few periods.
        with Client(server.url) as client:
            deadline = time.monotonic() + 20
            counts = client.loop_status().raw["counts"]
            while counts["rewards"] < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
                counts = client.loop_status().raw["counts"]
        assert counts["decisions"] >= 1 and counts["rewards"] >= 1, counts
    finally:
        server.kill()
