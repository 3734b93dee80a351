"""Vowpal Wabbit ``--cb_explore_adf`` behind the :class:`bandit.policy.Policy` protocol.

The only importer of ``vowpal_wabbit_next``. Input is built as DSJSON by :mod:`bandit.dsjson`
and parsed by VW's own ``DSJsonFormatParser``; VW learns costs, and the DSJSON codec writes
``_label_cost = −reward``.

As in Personalizer, the service's ``explorationPercentage`` is the ε of ε-greedy: when the
arguments choose no other exploration algorithm, ``--epsilon`` is set to the service's ε.
"""

from __future__ import annotations

import shlex
from typing import Any, Literal, cast

import msgspec
import vowpal_wabbit_next as vw

from bandit.dsjson import context_object, learn_object
from bandit.errors import InvalidPolicyConfiguration, InvalidRankRequest
from bandit.events import JoinedEvent, RankRequest

_encode = msgspec.json.Encoder().encode

DEFAULT_ARGUMENTS = "--cb_explore_adf --epsilon 0.2 --cb_type mtr -q ::"
"""banditd's default: ε-greedy with VW's default learning-rate schedule, chosen by the sweep in
docs/policy-comparison.md (+0.07 mean reward over Personalizer's arguments across the simulated
worlds). ε-greedy keeps Personalizer's meaning of ``explorationPercentage`` as the ε."""

PERSONALIZER_ARGUMENTS = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
"""Personalizer's documented default learning settings, for comparison and migration."""
MAX_ARGUMENTS_LENGTH = 1024

_UNSAFE = frozenset(
    {
        # file input and output
        "-d",
        "--data",
        "-f",
        "--final_regressor",
        "-i",
        "--initial_regressor",
        "-c",
        "--cache",
        "--cache_file",
        "--readable_model",
        "--invert_hash",
        "-p",
        "--predictions",
        "-r",
        "--raw_predictions",
        "--audit_regressor",
        "--output_feature_regularizer_binary",
        "--output_feature_regularizer_text",
        "--input_feature_regularizer",
        "--feature_mask",
        "--dictionary",
        "--dictionary_path",
        "--save_per_pass",
        "--log_output",
        "--extra_metrics",
        "--dsjson",
        "--json",
        "--flatbuffer",
        "--compressed",
        # daemon mode and process control
        "--daemon",
        "--port",
        "--num_children",
        "--pid_file",
        "--foreground",
        "--active",
        "--port_file",
        "--span_server",
        "--unique_id",
        "--total",
        "--node",
        "--sendto",
    }
)
_OTHER_EXPLORATION = frozenset(
    {
        "--first",
        "--bag",
        "--cover",
        "--squarecb",
        "--regcb",
        "--regcbopt",
        "--softmax",
        "--rnd",
        "--synthcover",
        "--large_action_space",
    }
)


def _tokens(arguments: str) -> list[str]:
    if len(arguments) > MAX_ARGUMENTS_LENGTH:
        raise InvalidPolicyConfiguration(
            f"policy arguments must be at most {MAX_ARGUMENTS_LENGTH} characters."
        )
    try:
        tokens = shlex.split(arguments)
    except ValueError as exc:
        raise InvalidPolicyConfiguration(f"cannot split policy arguments: {exc}.") from exc
    if "--cb_explore_adf" not in tokens:
        raise InvalidPolicyConfiguration("policy arguments must include --cb_explore_adf.")
    for token in tokens:
        flag = token.split("=", 1)[0]
        if not flag.startswith("--") and flag[:2] in _UNSAFE:
            flag = flag[:2]  # a short option with its value attached, like -fmodel.vw
        if flag in _UNSAFE:
            raise InvalidPolicyConfiguration(
                f"{flag} is not allowed: banditd manages input, output and models itself."
            )
    return tokens


def _with_epsilon(tokens: list[str], epsilon: float) -> list[str]:
    if any(t.split("=", 1)[0] in _OTHER_EXPLORATION for t in tokens):
        return tokens
    out: list[str] = []
    skip = False
    for token in tokens:
        if skip:
            skip = False
            continue
        if token == "--epsilon":
            skip = True
            continue
        if token.startswith("--epsilon="):
            continue
        out.append(token)
    return [*out, "--epsilon", repr(float(epsilon))]


def _workspace(tokens: list[str], model: bytes | None) -> vw.Workspace[Literal[False]]:
    try:
        workspace = vw.Workspace([*tokens, "--quiet"], model_data=model or None)
    except RuntimeError as exc:
        raise InvalidPolicyConfiguration(f"invalid policy arguments: {exc}") from exc
    if workspace.prediction_type != vw.PredictionType.ActionProbs or not workspace.multiline:
        raise InvalidPolicyConfiguration(
            "policy arguments must describe a cb_explore_adf learner that returns "
            "action probabilities."
        )
    return workspace


def validate_arguments(arguments: str) -> None:
    """Check an argument string by building a workspace from it.

    Raises:
        InvalidPolicyConfiguration: too long, unsafe, not ``cb_explore_adf``, or rejected by VW.
    """
    _workspace(_tokens(arguments), None)


def bindings(workspace: vw.Workspace[Any]) -> tuple[Any, Any] | None:
    """The workspace's bindings and the DSJSON line parser under the public API, or None when
    this version of ``vowpal_wabbit_next`` lacks them (then the public API is the way in).

    The public wrappers re-check every example's label type and wrap each parsed example in a
    Python object: about a tenth of a rank's time on the event loop, and about as much again as
    parsing and learning an example. Our DSJSON always yields CB labels for a
    ``cb_explore_adf`` workspace, so :class:`VWPolicy` calls the bindings when there are any.
    """
    core = getattr(workspace, "_workspace", None)
    parse = getattr(getattr(vw, "_core", None), "_parse_line_dsjson", None)
    if parse is None or not hasattr(core, "predict_multi_ex_one"):
        return None
    return core, parse


class VWPolicy:
    """A VW contextual-bandit learner on DSJSON input.

    Args:
        arguments: a ``cb_explore_adf`` command line (validated; unsafe flags rejected).
        epsilon: the service's exploration budget, used as ``--epsilon`` for ε-greedy.
        model: bytes from :meth:`to_bytes` to restore, or None for a fresh model.
    """

    def __init__(self, arguments: str, *, epsilon: float, model: bytes | None = None) -> None:
        self._arguments = arguments
        self._workspace = _workspace(_with_epsilon(_tokens(arguments), epsilon), model)
        self._parser = vw.DSJsonFormatParser(self._workspace)
        found = bindings(self._workspace)
        self._core: Any = found[0] if found else None
        self._parse_core: Any = found[1] if found else None

    @property
    def arguments(self) -> str:
        return self._arguments

    def predict_one(self, request: RankRequest) -> list[float]:
        line = _encode({"c": context_object(request)})
        try:
            if self._core is not None:  # the binding reads the UTF-8 bytes as they are
                raw = self._core.predict_multi_ex_one(self._parse_core(self._core, line))
            else:
                raw = self._workspace.predict_one(self._parser.parse_json(line.decode()))
        except RuntimeError as exc:  # VW's parser rejects a feature value the schema let by
            raise InvalidRankRequest(f"the features could not be read: {exc}") from exc
        scores = cast(list[tuple[int, float]], raw)
        pmf = [0.0] * len(request.actions)
        for index, probability in scores:
            pmf[index] = probability
        total = sum(pmf)
        # Some exploration algorithms (--regcbopt) score tied actions 1 each without normalising.
        if total > 0.0 and abs(total - 1.0) > 1e-6:
            pmf = [p / total for p in pmf]
        return pmf

    def learn_one(self, event: JoinedEvent) -> None:
        line = _encode(learn_object(event))
        if self._core is not None:
            self._core.learn_multi_ex_one(self._parse_core(self._core, line))
        else:
            self._workspace.learn_one(self._parser.parse_json(line.decode()))

    def to_bytes(self) -> bytes:
        return bytes(self._workspace.serialize())
