"""A child process that feeds examples to VW, so a test observes a crash instead of suffering it.

Run as ``python -m tests.policies.vw_worker``. It reads one JSON message per line on stdin and
runs each in a fork of itself that exits as a process does (:func:`_serve`), then answers one
line on stdout: ``ok``; ``rejected <message>`` when VW (or the policy) raised an exception; or
``crashed exit status <n>: <end of stderr>`` when the fork died. Should the worker itself die,
:class:`Worker` notices the closed pipe, reports a crash and starts a new one.

A message is ``{"arguments", "mode", "mapped", "stored", "context", "actions", "reward"}``:
``mode`` is ``predict`` or ``learn``; ``context`` is the request's list of context feature
objects and ``actions`` one list of feature objects per action; ``stored: true`` reads the
request back from the store's JSON with its feature values left encoded, as the learner does.
``mapped: true`` goes through :class:`policies.vw.VWPolicy` (the service's path, with the
safety mapping); ``mapped: false`` hands VW the DSJSON line :mod:`bandit.dsjson` builds, as it
is, with no mapping — the control that shows which inputs kill an unprotected process.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

ANSWER_TIMEOUT = 20.0
"""Seconds one example may take before the child is counted as hung and killed."""


def _request(message: dict[str, Any]) -> Any:
    from bandit.events import Action, RankRequest

    return RankRequest(
        event_id="e",
        context_features=tuple(message["context"]),
        actions=tuple(
            Action(id=f"a{i}", features=tuple(features))
            for i, features in enumerate(message["actions"])
        ),
    )


def _joined(request: Any, reward: float) -> Any:
    from bandit.events import Decision, JoinedEvent

    k = len(request.actions)
    pmf = tuple(1.0 / k for _ in range(k))
    decision = Decision(
        event_id="e",
        timestamp=0.0,
        request=request,
        pmf=pmf,
        chosen_index=k - 1,
        model_version=0,
        activated_at=0.0,
        close_at=0.0,
    )
    return JoinedEvent(
        decision=decision, reward=reward, reward_count=1, defaulted=False, joined_at=0.0, seq=1
    )


def _one(message: dict[str, Any]) -> None:  # pragma: no cover - runs in the child
    """Run one example on a fresh workspace, then let the workspace go.

    VW's heap corruption shows when the corrupted example is freed, which a long-lived
    workspace defers to its own destruction (often process exit): a workspace per example makes
    a crash happen on the example that caused it.
    """
    import msgspec
    import vowpal_wabbit_next as vw

    from bandit.dsjson import context_object, learn_object
    from policies.vw import VWPolicy, bindings

    arguments = message["arguments"]
    request = _request(message)
    if message.get("stored"):  # as the learner reads it back: values left as stored JSON
        from stores.rows import request_from_json, request_to_json

        request = request_from_json(request_to_json(request), raw_features=True)
    learn = message["mode"] == "learn"
    if message["mapped"]:
        policy = VWPolicy(arguments, epsilon=0.2)
        if learn:
            policy.learn_one(_joined(request, float(message["reward"])))
        else:
            policy.predict_one(request)
        return
    workspace = vw.Workspace([*arguments.split(), "--quiet"])
    found = bindings(workspace)
    assert found is not None
    core, parse = found
    encode = msgspec.json.Encoder().encode
    if learn:
        line = encode(learn_object(_joined(request, float(message["reward"]))))
        core.learn_multi_ex_one(parse(core, line))
    else:
        core.predict_multi_ex_one(parse(core, encode({"c": context_object(request)})))


def _answer(message: dict[str, Any]) -> str:  # pragma: no cover - runs in the child
    try:
        _one(message)
    except Exception as exc:  # every exception is an answer, not a crash
        return "rejected " + f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
    return "ok"


def _serve() -> None:  # pragma: no cover - runs in the child
    """Answer each message from a forked grandchild that exits through libc's ``exit``.

    VW's corruption of its heap shows only when the damaged memory is freed, which for some
    inputs is at process exit (static destructors), so every example runs in its own fork
    (cheap: everything is imported already) that ends the way a process ends. A clean exit
    passes its answer on; a signal or non-zero status is a crash.
    """
    import ctypes
    import tempfile

    import vowpal_wabbit_next  # noqa: F401 - imported once, before forking

    import policies.vw  # noqa: F401

    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile() as errors:
        for line in sys.stdin:
            message = json.loads(line)
            errors.seek(0)
            errors.truncate()
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                os.dup2(errors.fileno(), 2)
                answer = _answer(message)
                os.write(write, answer.encode())
                os.close(write)
                sys.stdout.flush()
                libc.exit(0)
            os.close(write)
            chunks = []
            while chunk := os.read(read, 65536):
                chunks.append(chunk)
            os.close(read)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            if code == 0 and chunks:
                answer = b"".join(chunks).decode(errors="replace")
            else:
                errors.seek(0)
                tail = errors.read()[-300:].decode(errors="replace").replace("\n", " ").strip()
                answer = f"crashed exit status {code}: {tail}"
            sys.stdout.write(answer + "\n")
            sys.stdout.flush()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one example did: ``ok``, ``rejected`` (an exception, with its message), ``crashed``
    (the child died; ``detail`` has the exit status and the end of its stderr) or ``hung``."""

    kind: str
    detail: str = ""


class Worker:
    """A long-lived child running :func:`_serve`, restarted after every crash.

    Use as a context manager; the child is killed and reaped on exit.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self.crashes = 0

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop()

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.policies.vw_worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        return self._proc

    def _stop(self) -> str:
        proc, self._proc = self._proc, None
        if proc is None:
            return ""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        err = proc.stderr.read() if proc.stderr else b""
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return f"exit status {proc.returncode}: {err.decode(errors='replace')[-300:].strip()}"

    def run(
        self,
        context: list[Any],
        actions: list[list[Any]],
        *,
        arguments: str,
        mode: str,
        mapped: bool,
        reward: float = 1.0,
        stored: bool = False,
    ) -> Outcome:
        """Feed one example to the child and say what happened."""
        proc = self._proc if self._proc is not None and self._proc.poll() is None else None
        proc = proc or self._start()
        assert proc.stdin is not None and proc.stdout is not None
        message = {
            "arguments": arguments,
            "mode": mode,
            "mapped": mapped,
            "context": context,
            "actions": actions,
            "reward": reward,
            "stored": stored,
        }
        try:
            proc.stdin.write(json.dumps(message).encode() + b"\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self.crashes += 1
            return Outcome("crashed", self._stop())
        deadline = time.monotonic() + ANSWER_TIMEOUT
        ready: list[Any] = []
        while not ready and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if not ready:
            self._stop()
            return Outcome("hung")
        answer = proc.stdout.readline().decode(errors="replace").rstrip("\n")
        if not answer:
            self.crashes += 1
            return Outcome("crashed", self._stop())
        kind, _, detail = answer.partition(" ")
        if kind == "crashed":
            self.crashes += 1
        return Outcome(kind, detail)


if __name__ == "__main__":  # pragma: no cover
    _serve()
