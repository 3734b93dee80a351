"""The sans-IO core: the retry rule, the line framing of export and import, and the calls."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bandit.events import Action, RankRequest
from server.client import core, framing, retry
from server.client.errors import error_from_response

RNG = random.Random(0)


def test_backoff_doubles_within_its_jitter_and_is_bounded() -> None:
    rule = retry.RetryPolicy(attempts=10, backoff=1.0, max_backoff=4.0, max_total=1e9)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        waits = [
            rule.delay(attempt=attempt, status=429, retry_after=None, elapsed=0, safe=True, rng=RNG)
            for _ in range(50)
        ]
        assert all(w is not None and ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # jittered


def test_connection_failures_are_retried_only_for_safe_calls() -> None:
    rule = retry.RetryPolicy()
    assert rule.delay(attempt=1, status=None, retry_after=None, elapsed=0, safe=True, rng=RNG)
    assert (
        rule.delay(attempt=1, status=None, retry_after=None, elapsed=0, safe=False, rng=RNG) is None
    )
    for status in (400, 404, 409, 500):
        assert (
            rule.delay(attempt=1, status=status, retry_after=1, elapsed=0, safe=True, rng=RNG)
            is None
        )


def test_the_total_time_bounds_the_retries() -> None:
    rule = retry.RetryPolicy(max_total=5.0, backoff=1.0)
    assert rule.delay(attempt=1, status=503, retry_after=None, elapsed=3.9, safe=True, rng=RNG)
    assert (
        rule.delay(attempt=1, status=503, retry_after=None, elapsed=4.99, safe=True, rng=RNG)
        is None
    )


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=20), st.data())
def test_line_splitter_gives_the_lines_back_whatever_the_chunking(
    lines: list[bytes], data: st.DataObject
) -> None:
    text = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10)))
    splitter = framing.LineSplitter()
    got: list[str] = []
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        try:
            got += splitter.feed(text[start:end])
        except UnicodeDecodeError:
            return  # a line of arbitrary bytes that is not UTF-8
    got += splitter.finish()
    try:
        expected = [line.decode() for line in lines if line.strip()]
    except UnicodeDecodeError:
        return
    assert got == expected


def test_import_body_chunks_from_every_kind_of_source(tmp_path: Path) -> None:
    lines = [json.dumps({"n": i}) for i in range(1000)]
    text = "".join(line + "\n" for line in lines).encode()
    path = tmp_path / "logs.json"
    path.write_bytes(text)
    for source in (str(path), path, io.BytesIO(text), lines, [line.encode() for line in lines]):
        chunks = list(framing.body_chunks(source, size=1024))
        assert b"".join(chunks) == text
        assert max(map(len, chunks)) <= 1024 + 20  # one line past the chunk size at most
    mixed: list[str | bytes] = [b"a", "b\n"]
    assert list(framing.body_chunks(iter(mixed))) == [b"a\nb\n"]


def test_calls_carry_what_the_server_needs() -> None:
    request = RankRequest(event_id="", context_features=(), actions=(Action(id="a"),))
    first, second = core.rank(request), core.rank(request)
    assert json.loads(first.body or b"")["eventId"] != json.loads(second.body or b"")["eventId"]
    reward = core.reward("a b/c", 1.0)
    assert reward.path == "/v1/events/a%20b%2Fc/reward" and reward.safe
    assert reward.headers["Idempotency-Key"] != core.reward("a", 1.0).headers["Idempotency-Key"]
    assert core.import_logs("Apprentice").path == "/v1/logs/import?mode=Apprentice"
    assert not core.activate_model(3).safe and not core.import_logs().safe


def test_error_bodies_are_read_field_by_field() -> None:
    body = json.dumps(
        {
            "error": {
                "code": "BadRequest",
                "message": "rewardWaitTime must be …",
                "target": "rewardWaitTime",
                "innerError": {"code": "InvalidRewardWaitTime"},
            }
        }
    ).encode()
    error = error_from_response(400, body, method="PUT", path="/v1/configurations/service")
    assert (error.status, error.code, error.target) == (400, "BadRequest", "rewardWaitTime")
    assert error.inner_code == "InvalidRewardWaitTime"
    assert str(error) == (
        "PUT /v1/configurations/service answered 400 InvalidRewardWaitTime: "
        "rewardWaitTime must be …"
    )
