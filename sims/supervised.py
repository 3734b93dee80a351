"""Supervised data as a bandit problem: scikit-learn's handwritten digits.

Each round draws one image (with replacement); the 64 pixel intensities (scaled to [0, 1], zeros
left out) are the context, the ten labels are the actions, and the reward is 1 for the right
label and 0 otherwise, so the expected reward is exactly known. The dataset ships inside
scikit-learn; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np
import numpy.typing as npt

from bandit.events import Action
from sims.environment import Draws, FloatArray, Round, actions_of, make_request


@cache
def load_digits() -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """The digits images (shape (1797, 64), in [0, 1]) and labels (shape (1797,), 0–9)."""
    from sklearn.datasets import load_digits as sk_load_digits

    data = sk_load_digits()
    return (
        np.asarray(data.data, dtype=np.float64) / 16.0,
        np.asarray(data.target, dtype=np.int64),
    )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DigitsEnvironment:
    """Contextual bandit from multiclass digits: reward 1 for the true label.

    Args:
        seed: fixes the order in which images are drawn.
    """

    seed: int
    name: str = "digits"
    images: FloatArray = field(init=False, repr=False)
    labels: npt.NDArray[np.int64] = field(init=False, repr=False)
    actions: tuple[Action, ...] = field(init=False, repr=False)
    draws: Draws = field(init=False, repr=False)

    def __post_init__(self) -> None:
        images, labels = load_digits()
        put = object.__setattr__
        put(self, "images", images)
        put(self, "labels", labels)
        put(
            self,
            "actions",
            actions_of([(str(k), [{"label": {"digit": str(k)}}]) for k in range(10)]),
        )
        put(self, "draws", Draws(self.seed, 0, normals=0, uniforms=1))

    def round(self, t: int) -> Round:
        row = int(self.draws.at(t)[1][0] * len(self.labels))
        pixels = self.images[row]
        context = {"pixels": {f"p{i}": round(float(v), 4) for i, v in enumerate(pixels) if v}}
        expected = np.zeros(10, dtype=np.float64)
        expected[int(self.labels[row])] = 1.0
        return Round(
            index=t,
            request=make_request(t, [context], self.actions),
            expected=expected,
            realized=expected.copy(),
        )
