"""What the trainer stores for edges to read: its report, and the guardrail state.

The trainer writes a :class:`TrainerReport` every ``report_interval`` seconds
(:mod:`server.trainer.reporter`): the ``/v1/loop/status`` document, the learner's figures for
``/healthz``, the text exposition of its metrics, and the watcher's scores per model version.
Every edge serves these from the store, so any edge answers for the whole loop.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from bandit.store import LoopSettings

REPORT_KEY = "trainer_report"
GUARDRAIL_KEY = "guardrail_state"
RESTORED_KEY = "model_restored_from"
"""For each version a manual activation made, the version it restored (JSON)."""
MODEL_CREATED_KEY = "model_created_at"
"""When the learner's model was last replaced by a fresh one (``creationTime``)."""
CONFIG_EDITED_KEY = "config_edited_at"
"""When the service configuration was last changed (``lastConfigurationEditDate``)."""


class TrainerReport(msgspec.Struct, frozen=True, kw_only=True):
    """The trainer's state as of ``at`` (seconds since the epoch)."""

    at: float
    holder: str
    running: bool
    cursor: int
    learned_count: int
    failures: int
    model_version: int
    status: dict[str, Any]
    versions: dict[str, Any]
    apprentice: dict[str, Any] | None
    watch: dict[str, Any]
    metrics: str


def save_report(store: LoopSettings, report: TrainerReport) -> None:
    """Replace the stored report."""
    store.set_meta(REPORT_KEY, msgspec.json.encode(report).decode())


def load_report(store: LoopSettings) -> TrainerReport | None:
    """The last report a trainer stored, or None (none yet, or unreadable)."""
    text = store.get_meta(REPORT_KEY)
    if not text:
        return None
    try:
        return msgspec.json.decode(text, type=TrainerReport)
    except msgspec.ValidationError:
        return None


def guardrail_tripped(store: LoopSettings) -> bool:
    """Whether the stored guardrail state is tripped (edges then serve the baseline)."""
    text = store.get_meta(GUARDRAIL_KEY)
    if not text:
        return False
    try:
        return bool(json.loads(text).get("state") == "tripped")
    except (ValueError, AttributeError):
        return False


def restored_from(store: LoopSettings) -> dict[int, int]:
    """For each version made by a manual activation, the version it restored."""
    text = store.get_meta(RESTORED_KEY)
    try:
        return {int(k): int(v) for k, v in json.loads(text).items()} if text else {}
    except (ValueError, AttributeError):
        return {}
