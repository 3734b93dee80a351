"""Process settings: defaults, the TOML file, ``BANDITD_*`` variables and CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.entry.settings import Settings, SettingsError, is_loopback, load


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


@pytest.mark.parametrize(
    "setting",
    ["header_timeout = 0", "body_timeout = -1", "idle_timeout = 'x'", "max_connections = 0"],
)
def test_connection_settings_are_checked(tmp_path: Path, setting: str) -> None:
    config = tmp_path / "banditd.toml"
    config.write_text(setting + "\n")
    with pytest.raises(SettingsError, match=f"{setting.split()[0]} must be"):
        load(config_file=str(config), environ={})
