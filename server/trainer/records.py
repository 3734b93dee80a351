"""What the trainer stores for edges to read: its report, the guardrail state, the loop's times.

The trainer writes a :class:`TrainerReport` every ``report_interval`` seconds
(:mod:`server.trainer.reporter`): the ``/v1/loop/status`` document, the learner's figures for
``/healthz``, the text exposition of its metrics, and the watcher's scores per model version.
Every edge serves these from the store, so any edge answers for the whole loop.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bandit.events import LoopTime, ReportRecord
from bandit.guardrail import GuardrailState
from bandit.store import LoopSettings, ModelRegistry

MODEL_CREATED_KEY = LoopTime.MODEL_CREATED
CONFIG_EDITED_KEY = LoopTime.CONFIG_EDITED


class TrainerReport(msgspec.Struct, frozen=True, kw_only=True):
    """The trainer's state as of ``at`` (seconds since the epoch)."""

    at: float
    holder: str
    running: bool
    cursor: int
    learned_count: int
    failures: int
    status: dict[str, Any]
    versions: dict[str, Any]
    watch: dict[str, Any]
    metrics: str


def save_report(store: LoopSettings, report: TrainerReport) -> None:
    """Replace the stored report."""
    body = msgspec.json.encode(report)
    store.save_report(ReportRecord(at=report.at, holder=report.holder, body=body))


def load_report(store: LoopSettings) -> TrainerReport | None:
    """The last report a trainer stored, or None (none yet, or unreadable)."""
    record = store.load_report()
    if record is None:
        return None
    try:
        return msgspec.json.decode(record.body, type=TrainerReport)
    except msgspec.DecodeError:
        return None


def guardrail_tripped(store: LoopSettings) -> bool:
    """Whether the stored guardrail state is tripped (edges then serve the baseline)."""
    saved = store.load_guardrail()
    return saved is not None and saved.state is GuardrailState.TRIPPED


def restored_from(store: ModelRegistry) -> dict[int, int]:
    """For each kept version made by a manual activation, the version it restored."""
    models = store.list_models()
    return {m.version: m.restored_from for m in models if m.restored_from is not None}
