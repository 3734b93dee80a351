"""Delayed and missing rewards: any world, with rewards that come late or never.

Each round's reward is reported ``delay`` seconds after the decision, drawn from a delay
distribution; a share ``missing`` is never reported, and delays past the loop's reward wait time
arrive late. Both are learned as the loop's default reward, which is exactly the bias the wait
window and the default reward trade off. A share ``deferred`` of requests is sent with
``deferActivation`` and activated ``activation_delay`` seconds later (never, when that is None),
so the activation path is exercised too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from sims.environment import Draws, Environment, Round

DELAYS = ("fixed", "exponential", "lognormal", "uniform")
"""Delay distributions, each with mean ``mean_delay`` seconds."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DelayedEnvironment:
    """Wraps ``inner``; changes only when (and whether) rewards and activations are reported.

    Args:
        inner: the world that decides contexts and rewards.
        seed: seeds the delays (independent of ``inner``'s draws).
        delay: one of :data:`DELAYS`.
        mean_delay: mean reporting delay in seconds.
        missing: probability that a reward is never reported.
        deferred: probability that a request defers activation.
        activation_delay: seconds until a deferred event is activated; None for never.
    """

    inner: Environment
    seed: int
    delay: str = "exponential"
    mean_delay: float = 5.0
    missing: float = 0.2
    deferred: float = 0.0
    activation_delay: float | None = 1.0
    name: str = "delayed"
    draws: Draws = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "draws", Draws(self.seed, 2, normals=1, uniforms=3))
        if self.delay not in DELAYS:
            raise ValueError(f"delay must be one of {', '.join(DELAYS)}, got {self.delay!r}")
        if not 0.0 <= self.missing <= 1.0 or not 0.0 <= self.deferred <= 1.0:
            raise ValueError("missing and deferred are probabilities")

    def draw_delay(self, t: int) -> tuple[float, bool, bool]:
        """(delay in seconds, dropped, deferred) of round ``t``."""
        normals, (u_delay, u_missing, u_defer) = self.draws.at(t)
        mean = self.mean_delay
        if self.delay == "fixed":
            delay = mean
        elif self.delay == "exponential":
            delay = -mean * math.log1p(-float(u_delay))
        elif self.delay == "lognormal":
            # σ = 1, so the log-mean log(mean) − σ²/2 gives the requested mean.
            delay = math.exp(math.log(max(mean, 1e-9)) - 0.5 + float(normals[0]))
        else:
            delay = 2.0 * mean * float(u_delay)
        return delay, bool(u_missing < self.missing), bool(u_defer < self.deferred)

    def round(self, t: int) -> Round:
        base = self.inner.round(t)
        delay, dropped, deferred = self.draw_delay(t)
        request = replace(base.request, defer_activation=deferred)
        return replace(
            base,
            request=request,
            delay=delay,
            dropped=dropped,
            activate_after=self.activation_delay if deferred else None,
        )
