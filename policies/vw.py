"""Vowpal Wabbit ``--cb_explore_adf`` behind the :class:`bandit.policy.Policy` protocol.

The only importer of ``vowpal_wabbit_next``. Input is built as DSJSON by :mod:`bandit.dsjson`
and parsed by VW's own ``DSJsonFormatParser``; VW learns costs, and the DSJSON codec writes
``_label_cost = −reward``.

Every line is made safe for VW here, and only here, before VW parses it (:func:`vw_line`): VW's
DSJSON parser corrupts its heap — and the process dies, at once or later — on a key whose first
character is not ASCII (such keys are given an ASCII form first, :func:`vw_name`) and on a
``__aid`` key inside a namespace (``_`` keys there are dropped, as Personalizer ignores them).
Requests and logged events pass through the same mapping, so an event logged before it existed
is converted when the learner reads it. The stored request and exported DSJSON keep the names
as they were sent (docs/vw-boundary.md).

As in Personalizer, the service's ``explorationPercentage`` is the ε of ε-greedy: when the
arguments choose no other exploration algorithm, ``--epsilon`` is set to the service's ε.
"""

from __future__ import annotations

import functools
import json
import shlex
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import quote

import msgspec
import vowpal_wabbit_next as vw

from bandit.dsjson import context_object, learn_object
from bandit.errors import InvalidPolicyConfiguration, InvalidRankRequest
from bandit.events import JoinedEvent, RankRequest

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

MARKER = "^"
"""The first character of every encoded name (:func:`vw_name`)."""

_KEPT = "".join(chr(code) for code in range(33, 127) if chr(code) != "%")
_MARKER_BYTE = MARKER.encode()


def vw_name(name: str) -> str:
    """The name VW sees for the feature object key ``name``: ``name`` itself unless its first
    character is not ASCII or is :data:`MARKER`; then :data:`MARKER` and the percent-encoded
    name.

    Invariants: the result is ``name`` when it needs no encoding (so ``-q`` letters and the
    names in exported DSJSON keep their meaning); an encoded result starts with
    :data:`MARKER` and is printable ASCII without spaces; distinct names give distinct results
    (names that start with the marker are encoded too, and percent-encoding escapes ``%``).

    >>> vw_name("user"), vw_name("é"), vw_name("中x"), vw_name("^e"), vw_name("")
    ('user', '^%C3%A9', '^%E4%B8%ADx', '^^e', '')
    """
    if name and (name[0] >= "\x80" or name[0] == MARKER):
        return _encoded(name)
    return name


@functools.lru_cache(maxsize=4096)
def _encoded(name: str) -> str:
    # Feature names repeat from request to request; percent-encoding is the slow part.
    return MARKER + quote(name, safe=_KEPT)


def _safe_list(values: list[Any]) -> list[Any]:
    return [
        _safe_object(v) if type(v) is dict else _safe_list(v) if type(v) is list else v
        for v in values
    ]


def _safe_object(obj: dict[str, Any]) -> dict[str, Any]:
    # Below the top level VW reads some "_" keys as instructions (``__aid`` crashes it, a nested
    # ``_multi`` is refused); Personalizer ignores every "_" name, and so does VW's input here.
    # (Exact type checks and the inlined test of vw_name: this runs for every key of a line
    # that needs the mapping.)
    safe: dict[str, Any] = {}
    for key, value in obj.items():
        if key[:1] == "_":
            continue
        if key and (key[0] >= "\x80" or key[0] == MARKER):
            key = _encoded(key)
        if type(value) is dict:
            value = _safe_object(value)
        elif type(value) is list:
            value = _safe_list(value)
        safe[key] = value
    return safe


def vw_line(line: bytes) -> bytes:
    """``line`` (DSJSON as :mod:`bandit.dsjson` builds it) in the form VW can parse safely.

    In the result no key of ``c``, at any depth, starts with a non-ASCII character or
    :data:`MARKER` (:func:`vw_name` encodes it), and no key inside a namespace starts with ``_``
    (dropped; Personalizer ignores such names): the two kinds of key that crash VW's parser
    (docs/vw-boundary.md). Everything outside ``c`` (the labels) and ``c``'s own ``_multi``
    are kept.

    A line that is ASCII and whose ``c`` has no backslash (so no ``\\u`` escape), no
    :data:`MARKER` and no ``_`` but its ``_multi``'s holds no such key and is returned as it is
    (no copy: the common case on every rank and learn; a few ``memchr`` scans, well under a µs
    for a 1 KB line). Only other lines are decoded and rebuilt.

    Raises:
        InvalidRankRequest: the line cannot be written as UTF-8 (a lone surrogate), or is
            nested too deeply to rebuild.
    """
    start = line.find(b'"c":')
    if (
        start >= 0
        and line.isascii()
        and line.find(b"\\", start) < 0
        and line.find(_MARKER_BYTE, start) < 0
    ):
        first = line.find(b"_", start)
        if line.startswith(b'"_multi"', first - 1) and line.find(b"_", first + 1) < 0:
            return line
    try:
        return _rebuilt(line)
    except RecursionError as exc:  # nested about as deep as the decoder allows
        raise InvalidRankRequest("the features are nested too deeply.") from exc
    except UnicodeEncodeError as exc:
        raise InvalidRankRequest(f"the features could not be read: {exc}") from exc


def _line(obj: dict[str, Any]) -> bytes:
    try:
        return _encode(obj)
    except UnicodeEncodeError as exc:  # a lone surrogate, from a log read with json
        raise InvalidRankRequest(f"the features could not be read: {exc}") from exc


def _rebuilt(line: bytes) -> bytes:
    try:
        obj = _decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):  # a number beyond a double's range
        obj = json.loads(line)
    context = obj.get("c") if isinstance(obj, dict) else None
    if not isinstance(context, dict):
        return line
    multi = context.get("_multi")
    safe = _safe_object(context)
    if isinstance(multi, list):
        safe["_multi"] = _safe_list(multi)
    obj["c"] = safe
    return _encode(obj)


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
    except (RuntimeError, ValueError) as exc:
        # VW raises ValueError for some values, e.g. std::length_error for `--bag -3`.
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
        self._tokens = _with_epsilon(_tokens(arguments), epsilon)
        self._workspace = _workspace(self._tokens, model)
        self._explainer: _Explainer | None = None
        self._parser = vw.DSJsonFormatParser(self._workspace)
        found = bindings(self._workspace)
        self._core: Any = found[0] if found else None
        self._parse_core: Any = found[1] if found else None

    @property
    def arguments(self) -> str:
        return self._arguments

    def predict_one(self, request: RankRequest) -> list[float]:
        """Action probabilities for ``request`` (on its :func:`vw_line` form).

        Raises:
            InvalidRankRequest: VW's parser refused the features.
        """
        line = vw_line(_line({"c": context_object(request)}))
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
        """Learn ``event`` (on its :func:`vw_line` form, logged before the mapping or not).

        Raises:
            InvalidRankRequest: VW's parser refused the features (a request it refused at rank
                was answered 400 and never logged).
        """
        line = vw_line(_line(learn_object(event)))
        self._explainer = None  # built again from the learned model when next asked
        try:
            if self._core is not None:
                self._core.learn_multi_ex_one(self._parse_core(self._core, line))
            else:
                self._workspace.learn_one(self._parser.parse_json(line.decode()))
        except RuntimeError as exc:
            raise InvalidRankRequest(f"the logged features could not be read: {exc}") from exc

    def read_logged(self, event: JoinedEvent) -> None:
        """Parse ``event`` as :meth:`learn_one` does, without learning it (a log import checks
        every event this way before it stores any, so none can stop the learner).

        Raises:
            InvalidRankRequest: VW's parser refused the features.
        """
        line = vw_line(_line(learn_object(event)))
        try:
            self._parser.parse_json(line.decode())
        except RuntimeError as exc:
            raise InvalidRankRequest(f"the logged features could not be read: {exc}") from exc

    def to_bytes(self) -> bytes:
        return bytes(self._workspace.serialize())

    def explain(self, request: RankRequest, index: int) -> Explanation | None:
        """The per-feature scores of action ``index`` for ``request`` (docs/explanations.md),
        or None when this model's score is not a sum of per-feature shares (an interleaved
        model such as ``--bag``, cubic interactions).

        The first call builds a second workspace on this model (one model's memory again);
        ranking without explanations never does.

        Raises:
            InvalidRankRequest: VW's parser refused the features.
        """
        if self._explainer is None:
            self._explainer = _Explainer(self._tokens, bytes(self._workspace.serialize()))
        return self._explainer.explain(request, index)


# -- inference explanations ----------------------------------------------------------------------

_FNV_PRIME = 16777619
"""VW's multiplier for combining the hashes of an interaction's features (``FNV_prime``)."""
_CONSTANT_INDEX = 11650396
"""VW's hash of the constant (bias) feature (``constant``)."""
_UINT64 = (1 << 64) - 1
_MAX_PROBES = 4096
CONSTANT_NAME = "(constant)"
"""The name of the constant's (the bias weight's) share of the score in an explanation."""


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the model scored an action as it did: per-feature shares of its score.

    Attributes:
        index: the explained action's index in the request.
        features: ``(name, score)`` pairs, largest ``|score|`` first: features ``ns.feat`` as
            the client named them, interactions ``a^b``, and :data:`CONSTANT_NAME`. A score
            is minus the feature's share of VW's cost estimate, so positive supports the
            action (Personalizer's convention) and the scores sum to :attr:`score`.
        score: minus VW's raw score for the action (the cost it ranks by).
    """

    index: int
    features: tuple[tuple[str, float], ...]
    score: float


def _leaves(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    # (path, value) of every feature below ``obj``: objects are namespaces, anything else
    # (a number, a string, a boolean, an array) one named feature. "_" keys reach no feature.
    for key, value in obj.items():
        if key[:1] == "_":
            continue
        if type(value) is dict:
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value


def _skeleton(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        obj = {key: obj}
    return obj


class _Explainer:
    """A second workspace on the same model that reports VW's computation (its debug tree):
    built only when explanations are asked for, so ranking without them costs nothing."""

    def __init__(self, tokens: list[str], model: bytes) -> None:
        self.workspace = vw.Workspace(
            [*tokens, "--quiet"], model_data=model or None, enable_debug_tree=True
        )
        self.parser = vw.DSJsonFormatParser(self.workspace)
        self.constant = "--noconstant" not in tokens
        self._probes: dict[bytes, tuple[tuple[int, int], ...]] = {}

    def _parse(self, obj: dict[str, Any]) -> list[Any]:
        line = vw_line(_line(obj))
        try:
            return cast(list[Any], self.parser.parse_json(line.decode()))
        except RuntimeError as exc:
            raise InvalidRankRequest(f"the features could not be read: {exc}") from exc

    def _indices(self, path: tuple[str, ...], value: Any) -> tuple[tuple[int, int], ...]:
        # The (feature group, index) pairs VW's own parser makes of this one feature: names
        # are found by asking VW, never by re-deriving its hashing.
        obj = {"c": {**_skeleton(path, value), "_multi": [{}]}}
        key = _line(obj)
        found = self._probes.get(key)
        if found is None:
            shared = self._parse(obj)[0]
            found = tuple((g.feat_group_index, i) for g in shared for i in g.indices)
            if len(self._probes) >= _MAX_PROBES:
                self._probes.clear()
            self._probes[key] = found
        return found

    def _names(self, features: dict[str, Any]) -> dict[tuple[int, int], str]:
        names: dict[tuple[int, int], str] = {}
        for path, value in _leaves(features, ()):
            name = ".".join(path)
            for found in self._indices(path, value):
                names.setdefault(found, name)
        return names

    def explain(self, request: RankRequest, index: int) -> Explanation | None:
        context = context_object(request)
        examples = self._parse({"c": context})
        raw = self.workspace.predict_one(examples)
        leaves = _action_leaves(raw[1], len(request.actions)) if type(raw) is tuple else None
        if leaves is None or len(examples) not in (len(request.actions), len(request.actions) + 1):
            return None
        leaf = leaves[index]
        if leaf.offset != 0:  # an interleaved model (--bag, ...): not one weight per feature
            return None
        shared = examples[0] if len(examples) > len(request.actions) else None
        action = examples[len(examples) - len(request.actions) + index]
        multi = cast(list[dict[str, Any]], context["_multi"])
        names = self._names({k: v for k, v in context.items() if k != "_multi"})
        for found, name in self._names(multi[index]).items():
            names.setdefault(found, name)
        # As VW's shared-feature merger: each group holds the action's features, then the
        # shared ones (the order matters: an interaction's hash is not symmetric).
        groups: dict[int, list[tuple[int, float]]] = {}
        for example in (action, shared):
            for group in example or ():
                features = groups.setdefault(group.feat_group_index, [])
                features.extend(zip(group.indices, group.values, strict=True))
        weights = self.workspace.weights()  # a view: (index, model, weight and its state)
        mask = weights.shape[0] - 1
        # Every share is weight × value: the weights' indices and the values are gathered
        # first, then the weights read in one indexing (reading them one by one costs more than
        # all the rest of an explanation; ``take`` on the column would copy the whole model).
        keys: list[str] = []
        slots: list[int] = []
        values: list[float] = []
        named: dict[int, list[tuple[int, float, str]]] = {}
        for group, features in groups.items():
            named[group] = [
                (f, v, names.get((group, f)) or f"{chr(group)}#{f}") for f, v in features
            ]
            for feature, value, name in named[group]:
                keys.append(name)
                slots.append(feature & mask)
                values.append(value)
        if self.constant:
            keys.append(CONSTANT_NAME)
            slots.append(_CONSTANT_INDEX & mask)
            values.append(1.0)
        # The interactions VW generated for this example (``-q ::`` expanded and de-duplicated
        # by VW itself); within one group, as VW, each pair once and a feature with itself.
        for interaction in cast(list[str], leaf.interactions):
            if len(interaction) != 2:
                return None  # cubic and wider interactions are not explained
            first, second = ord(interaction[0]), ord(interaction[1])
            left, right = named.get(first, []), named.get(second, [])
            for i, (f1, v1, n1) in enumerate(left):
                base = (f1 * _FNV_PRIME) & _UINT64
                for f2, v2, n2 in right[i:] if first == second else right:
                    keys.append(f"{n1}^{n2}")
                    slots.append((base ^ f2) & mask)
                    values.append(v1 * v2)
        shares: dict[str, float] = {}
        for key, weight, value in zip(keys, weights[slots, 0, 0].tolist(), values, strict=True):
            shares[key] = shares.get(key, 0.0) + weight * value
        total = sum(shares.values())
        cost = float(leaf.partial_prediction)
        if abs(total - cost) > 1e-4 * (1.0 + abs(cost)):
            return None  # a reduction this does not model: no explanation rather than a wrong one
        ranked = sorted(((n, -v) for n, v in shares.items()), key=lambda p: -abs(p[1]))
        return Explanation(index=index, features=tuple(ranked), score=-cost)


def _action_leaves(tree: Any, actions: int) -> list[Any] | None:
    # The scoring step's node: one child per action, each a single-example computation whose
    # deepest node (gd) holds the action's raw score and the interactions used.
    stack = [tree]
    while stack:
        node = stack.pop()
        children = list(node.children)
        if len(children) == actions and not any(c.is_multiline for c in children):
            leaves = []
            for child in children:
                while child.children:
                    child = child.children[0]
                leaves.append(child)
            return leaves
        stack.extend(children)
    return None
