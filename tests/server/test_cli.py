"""The ``banditd`` command line, run as a user runs it (real subprocesses)."""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.entry.cli import BUILTIN, PLUGIN_SUMMARIES, main, parse_command


def test_serve_refuses_public_bind_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.entry.cli",
            "serve",
            "--db",
            str(tmp_path / "x.db"),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "refusing to bind '0.0.0.0' without an API key" in result.stderr
    assert not (tmp_path / "x.db").exists()


def banditd(*args: str) -> subprocess.CompletedProcess[str]:
    """``banditd ARGS`` as a user runs it (a real process)."""
    return subprocess.run(
        [sys.executable, "-m", "server.entry.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **_pythonpath()},
    )


def test_help_lists_every_command_with_a_description_on_stdout_and_exits_0() -> None:
    for flag in ("--help", "-h"):
        result = banditd(flag)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        out = result.stdout
        assert out.startswith("usage: banditd [-h] COMMAND [ARGS ...]\n")
        for name in ("serve", "train", "export", "import", "migrate", "copy"):
            assert f"\n  {name:<10}{BUILTIN[name].summary}\n" in out, (name, out)
        for name in ("simulate", "evaluate"):  # plugins, described without importing them
            assert f"\n  {name:<10}{PLUGIN_SUMMARIES[name]}\n" in out, (name, out)
        assert "\nexamples:\n  banditd serve" in out


def test_banditd_alone_prints_usage_on_stderr_and_exits_2() -> None:
    result = banditd()
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "usage: banditd [-h] COMMAND [ARGS ...]\n"
        "banditd: error: the following arguments are required: COMMAND\n"
    )


def test_unknown_command_names_the_known_ones_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: banditd [-h] COMMAND [ARGS ...]\n"), err
    assert "banditd: error: argument COMMAND: invalid choice: 'frobnicate' (choose from " in err
    for name in ("copy", "evaluate", "export", "import", "migrate", "serve", "simulate"):
        assert f"'{name}'" in err


def test_an_option_before_the_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--db", "x.db", "serve"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("banditd: error: --db comes before COMMAND; give options after it\n")


def test_serve_and_the_top_level_help_never_import_the_plugins() -> None:
    code = (
        "import sys\n"
        "from server.entry.cli import main, parse_command\n"
        "for argv in (['--help'], ['serve', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "parse_command(['serve', '--port', '8081'])\n"
        "print(sorted(m for m in sys.modules if m == 'sims' or m.startswith('sims.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **_pythonpath()},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_parse_command_parses_builtins_and_plugins_without_running_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, args = parse_command(["serve", "--db", str(tmp_path / "x.db"), "--workers", "2"])
    assert (name, args.workers, args.role) == ("serve", 2, None)
    assert not (tmp_path / "x.db").exists()
    name, args = parse_command(["simulate", "linear", "--policy", "egreedy", "--rounds", "5"])
    assert (name, args.scenarios, args.policy, args.rounds) == (
        "simulate",
        ["linear"],
        ["egreedy"],
        5,
    )
    name, args = parse_command(["import", "logs.dsjson", "--mode", "Apprentice"])
    assert (name, args.file, args.mode) == ("import", "logs.dsjson", "Apprentice")
    for argv in (["serve", "--wrokers", "2"], ["simulate", "--rounds", "many"], ["nope"]):
        with pytest.raises(SystemExit) as exit_:
            parse_command(argv)
        assert exit_.value.code == 2
        assert "error:" in capsys.readouterr().err


def serve(
    db: Path | str,
    port: int = 0,
    timeout: float = 60,
    *,
    config: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``banditd serve`` on ``db`` that is expected to exit by itself (it failed to start)."""
    args = ["serve", "--db", str(db), "--port", str(port)]
    args += ["--config", str(config)] if config else []
    return subprocess.run(
        [sys.executable, "-m", "server.entry.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", **_pythonpath(), **(env or {})},
    )


def _pythonpath() -> dict[str, str]:
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *names: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    assert lines[0].startswith("banditd: "), lines[0]
    return lines[0]


def test_db_naming_a_directory_prints_a_traceback(tmp_path: Path) -> None:
    line = assert_one_line(serve(tmp_path), 2, str(tmp_path))
    assert "is a directory" in line


def test_db_in_a_missing_folder_prints_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    line = assert_one_line(serve(missing / "x.db"), 2, str(missing))
    assert "does not exist" in line
    assert not missing.exists()


def test_db_under_a_file_prints_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    line = assert_one_line(serve(tmp_path / "file" / "x.db"), 2, str(tmp_path / "file"))
    assert "not a folder" in line


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tiny tmpfs mounted at ``where`` for the test (root only), always unmounted."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr!r}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_db_in_an_unwritable_place_prints_a_traceback(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "size=64k,ro") as ro:
        line = assert_one_line(serve(ro / "x.db"), 2, str(ro / "x.db"))
    assert "cannot write there" in line


def test_start_on_a_full_disk_prints_a_traceback(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "size=64k") as full:
        filler = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            with contextlib.suppress(OSError):
                for _ in range(1000):  # 64 KiB fills in 16 writes
                    os.write(filler, b"\0" * 4096)
        finally:
            os.close(filler)
        assert os.statvfs(full).f_bavail == 0
        line = assert_one_line(serve(full / "x.db"), 1, str(full / "x.db"))
    assert "is full" in line and "free some space" in line


def test_port_in_use_prints_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = assert_one_line(serve(tmp_path / "x.db", port), 2, f"127.0.0.1:{port}")
    assert "address already in use" in line and "--port" in line


def test_open_file_limit_below_max_connections_starves_the_process() -> None:
    """With a soft limit of 256 open files, 1,024 connections would fail to be accepted before
    the limit could answer them; start-up raises the soft limit (here, in a child process)."""
    script = (
        "import resource\n"
        "from server.api.connections import FD_RESERVE, ensure_descriptors\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "ensure_descriptors(1024)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1024 + FD_RESERVE, hard)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    soft, wanted, hard = (int(v) for v in result.stdout.split())
    if hard != -1 and hard < wanted:
        pytest.skip(f"the hard open-file limit ({hard}) is below {wanted}")
    assert soft == wanted


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('port = "8080"', {}, "port: expected `int`, got `str`"),
        ("port = 70000", {}, "port: expected `int` <= 65535"),
        ("[watch]\nwindow = -5", {}, "watch.window: must be within 2..10,000,000 events"),
        ("learn_batch = 0", {}, "learn_batch: expected `int` >= 1"),
        ('synchronous = "SOMETIMES"', {}, "synchronous: expected `str` matching regex"),
        ("colour = 'blue'", {}, "colour: unknown setting"),
        ("[watch]\nwindw = 400", {}, "watch.windw: unknown setting"),
        ("", {"BANDITD_PORT": "abc"}, "port: expected `int`, got `str` (from BANDITD_PORT)"),
        ("", {"BANDITD_WATCH_WINDOW": "1"}, "watch.window: must be within 2..10,000,000"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_status_2(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    config = tmp_path / "banditd.toml"
    config.write_text(text + "\n")
    line = assert_one_line(serve(tmp_path / "x.db", config=config, env=env), 2)
    assert line.startswith(f"banditd: {message}"), line
    assert not (tmp_path / "x.db").exists()


def test_every_plugin_pyproject_registers_has_a_summary_and_a_parser() -> None:
    # Read from pyproject.toml, not the installed metadata, so a plugin added there is checked
    # before the package is reinstalled.
    root = Path(__file__).resolve().parents[2]
    with (root / "pyproject.toml").open("rb") as f:
        plugins = tomllib.load(f)["project"]["entry-points"]["banditd.commands"]
    assert {"simulate", "evaluate"} <= set(plugins)
    for name, value in plugins.items():
        module_name, attr = value.split(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attr)), value
        builder = getattr(module, f"{attr.removesuffix('_main')}_parser", None)
        assert builder is not None, f"{module_name} has no {attr.removesuffix('_main')}_parser()"
        parser = builder()
        assert parser.prog == f"banditd {name}"
        assert parser.description and "examples:\n  banditd " in (parser.epilog or "")
        assert name in PLUGIN_SUMMARIES, name
