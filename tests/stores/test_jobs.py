"""The ``Jobs`` contract: job records."""

from __future__ import annotations

from bandit.events import JobRecord
from bandit.store import Jobs


def test_job_records(store: Jobs) -> None:
    assert store.get_job("evaluation", "a") is None
    first = JobRecord(kind="evaluation", id="a", created_at=2.0, data='{"x":1}')
    second = JobRecord(kind="evaluation", id="b", created_at=1.0, data="{}")
    other = JobRecord(kind="featureImportance", id="a", created_at=0.0, data="{}")
    for job in (first, second, other):
        store.save_job(job)
    assert store.get_job("evaluation", "a") == first
    assert [j.id for j in store.list_jobs("evaluation")] == ["b", "a"]
    replaced = JobRecord(kind="evaluation", id="a", created_at=2.0, data='{"x":2}')
    store.save_job(replaced)
    assert store.get_job("evaluation", "a") == replaced
    assert store.delete_job("evaluation", "a") is True
    assert store.delete_job("evaluation", "a") is False
    assert store.get_job("featureImportance", "a") == other
