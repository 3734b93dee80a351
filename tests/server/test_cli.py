"""The ``banditd`` command line and process settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import main
from server.settings import Settings, SettingsError, is_loopback, load


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "example.org"])
def test_non_loopback_bind_without_key_is_refused(host: str) -> None:
    with pytest.raises(SettingsError, match="without an API key"):
        load(overrides={"host": host}, environ={})


def test_non_loopback_bind_with_admin_key_is_allowed() -> None:
    settings = load(overrides={"host": "0.0.0.0"}, environ={"BANDITD_ADMIN_KEY": "k1,k2"})
    assert settings.admin_keys == ("k1", "k2")
    assert settings.auth_enabled


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert load(overrides={"host": host}, environ={}).host == host


def test_config_file_and_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('db = "x.db"\nport = 9999\nlearn_interval = 0.5\nclient_keys = ["c"]\n')
    settings = load(config_file=str(good), overrides={"port": 7000}, environ={})
    assert (settings.db, settings.port, settings.learn_interval) == ("x.db", 7000, 0.5)
    assert settings.client_keys == ("c",)
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'blue'\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        load(config_file=str(bad), environ={})
    with pytest.raises(SettingsError, match="cannot read"):
        load(config_file=str(tmp_path / "missing.toml"), environ={})


def test_more_than_two_keys_per_role_is_refused() -> None:
    with pytest.raises(SettingsError, match="at most two"):
        Settings(admin_keys=("a", "b", "c")).check()


def test_serve_refuses_public_bind_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
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


def test_unknown_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "usage: banditd COMMAND" in err
    assert "serve" in err
