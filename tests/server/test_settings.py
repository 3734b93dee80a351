"""Process settings: defaults, the TOML file, ``BANDITD_*`` variables and CLI overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.entry.settings import Settings, SettingsError, env_name, is_loopback, load
from server.trainer.watch_settings import FILE_NAMES, WatcherSettings, from_mapping

DOCS = Path(__file__).resolve().parents[2] / "docs"


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
    with pytest.raises(SettingsError, match=r"^colour: unknown setting "):
        load(config_file=str(bad), environ={})
    with pytest.raises(SettingsError, match="cannot read"):
        load(config_file=str(tmp_path / "missing.toml"), environ={})


def test_more_than_two_keys_per_role_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"^admin_keys: expected `array` of length <= 2$"):
        Settings(admin_keys=("a", "b", "c")).check()


@pytest.mark.parametrize(
    "setting",
    ["header_timeout = 0", "body_timeout = -1", "idle_timeout = 'x'", "max_connections = 0"],
)
def test_connection_settings_are_checked(tmp_path: Path, setting: str) -> None:
    config = tmp_path / "banditd.toml"
    config.write_text(setting + "\n")
    with pytest.raises(SettingsError, match=f"^{setting.split()[0]}: expected `"):
        load(config_file=str(config), environ={})


def _load_file(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    config = tmp_path / "banditd.toml"
    config.write_text(text + "\n")
    return load(config_file=str(config), environ=environ or {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('port = "8080"', "port: expected `int`, got `str`"),
        ("port = 70000", "port: expected `int` <= 65535"),
        ("port = true", "port: expected `int`, got `bool`"),
        ("learn_batch = 0", "learn_batch: expected `int` >= 1"),
        ("learn_interval = nan", "learn_interval: expected `float` > 0.0"),
        ("keep_models = 2.5", "keep_models: expected `int`, got `float`"),
        ('synchronous = "SOMETIMES"', "synchronous: expected `str` matching regex"),
        ("client_keys = 5", "client_keys: expected `array`, got `int`"),
        ('admin_keys = ["a", ""]', "admin_keys[1]: expected `str` matching regex"),
        ("colour = 'blue'", "colour: unknown setting"),
        ("colour = 1\nsize = 2", "colour, size: unknown settings"),
        ("watch = 5", "watch: expected `object`, got `int`"),
        ("[watch]\nwindow = -5", "watch.window: must be within 2..10,000,000 events"),
        ('[watch]\nwindow = "400"', "watch.window: expected `int`, got `str`"),
        ("[watch]\nwindw = 400", "watch.windw: unknown setting"),
        ("[watch]\nguardrail_enabled = 1", "watch.guardrail_enabled: expected `bool`, got `int`"),
        ("[watch]\nmin_events = 1", "watch.min_events: must be at least 2"),
        ("[watch.guardrail]\nmargin = 0.1", "watch.guardrail: unknown setting"),
    ],
)
def test_a_bad_setting_in_the_file_is_one_line_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        _load_file(tmp_path, text)
    line = str(caught.value)
    assert line.startswith(message + " ") or line.startswith(message + ":"), line
    assert line.endswith(f"(in {tmp_path / 'banditd.toml'})"), line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BANDITD_PORT", "abc", "port: expected `int`, got `str`"),
        ("BANDITD_PORT", "70000", "port: expected `int` <= 65535"),
        ("BANDITD_LEARN_BATCH", "0", "learn_batch: expected `int` >= 1"),
        ("BANDITD_LEARN_SHARE_UNDER_LOAD", "lots", "learn_share_under_load: expected `float`"),
        ("BANDITD_SYNCHRONOUS", "SOMETIMES", "synchronous: expected `str` matching regex"),
        ("BANDITD_ADMIN_KEY", "a,b,c", "admin_keys: expected `array` of length <= 2"),
        ("BANDITD_WATCH_WINDOW", "abc", "watch.window: expected `int`, got `str`"),
        ("BANDITD_WATCH_WINDOW", "-5", "watch.window: must be within 2..10,000,000 events"),
        ("BANDITD_WATCH_GUARDRAIL_ENABLED", "maybe", "watch.guardrail_enabled: expected `bool`"),
    ],
)
def test_a_bad_environment_variable_is_one_line_naming_the_setting_and_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(environ={variable: value})
    line = str(caught.value)
    assert line.startswith(message), line
    assert line.endswith(f"(from {variable})"), line


def test_a_bad_flag_names_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"^port: expected `int` <= 65535 \(from --port\)$"):
        load(overrides={"port": 70000}, environ={})


# Every setting, with a value other than its default as an environment variable would hold
# it, and the value it must decode to. Written out here rather than derived from Settings, so
# a setting added without a variable (or with a wrong type) fails.
EVERY_SETTING: dict[str, tuple[str, Any]] = {
    "db": ("other.db", "other.db"),
    "store": ("sqlite:///other/store.db", "sqlite:///other/store.db"),
    "host": ("127.0.0.2", "127.0.0.2"),
    "port": ("9000", 9000),
    "client_keys": ("c1, c2,", ("c1", "c2")),
    "admin_keys": ("a1", ("a1",)),
    "max_actions": ("12", 12),
    "max_body_bytes": ("2048", 2048),
    "learn_interval": ("0.5", 0.5),
    "learn_batch": ("64", 64),
    "checkpoint_interval": ("0", 0.0),
    "learn_share_under_load": ("1", 1.0),
    "busy_requests_per_second": ("50.5", 50.5),
    "keep_models": ("3", 3),
    "synchronous": ("normal", "normal"),
    "model_signing_key": ("s3cret", "s3cret"),
    "retention_interval": ("60", 60.0),
    "max_model_bytes": ("1000", 1000),
    "import_max_bytes": ("4096", 4096),
    "header_timeout": ("1.5", 1.5),
    "body_timeout": ("2", 2.0),
    "body_min_rate": ("100", 100),
    "idle_timeout": ("3", 3.0),
    "max_connections": ("10", 10),
    "lock_timeout": ("0", 0.0),
    "retrain_events_per_second": ("1000", 1000.0),
    "refresh_interval": ("0.25", 0.25),
    "report_interval": ("2", 2.0),
    "command_poll": ("0.05", 0.05),
    "command_timeout": ("12", 12.0),
    "lease_ttl": ("9", 9.0),
    "workers": ("3", 3),
    "trainer_nice": ("5", 5),
    "access_log": ("true", True),
}
EVERY_WATCH_SETTING: dict[str, tuple[str, Any]] = {
    "window": ("400", 400),
    "alpha": ("0.1", 0.1),
    "guardrail_enabled": ("false", False),
    "margin": ("0", 0.0),
    "min_events": ("50", 50),
    "drift_delta": ("0.5", 0.5),
    "drift_threshold": ("10", 10.0),
    "drift_min_events": ("5", 5),
    "interval": ("2", 2.0),
    "batch": ("16", 16),
    "history": ("30", 30),
}


def test_every_setting_can_come_from_the_environment() -> None:
    names = {f for f in Settings.__dataclass_fields__ if f not in {"watch", "extra"}}
    assert set(EVERY_SETTING) == names
    assert set(EVERY_WATCH_SETTING) == set(FILE_NAMES)
    environ = {env_name(name): raw for name, (raw, _) in EVERY_SETTING.items()}
    environ |= {env_name(f"watch.{key}"): raw for key, (raw, _) in EVERY_WATCH_SETTING.items()}
    settings = load(environ=environ)
    for name, (_, expected) in EVERY_SETTING.items():
        assert getattr(settings, name) == expected, name
        assert type(getattr(settings, name)) is type(expected), name
    assert settings.watch == {key: value for key, (_, value) in EVERY_WATCH_SETTING.items()}
    watcher = from_mapping(settings.watch, wire=False)
    assert (watcher.watch.window, watcher.guardrail.enabled, watcher.history) == (400, False, 30)
    assert watcher != WatcherSettings()


def test_a_store_url_of_no_known_form_is_a_setting_error_that_masks_its_password() -> None:
    with pytest.raises(SettingsError, match=r"^store: store URL 'mysql://u:\*\*\*@h/d'"):
        load(environ={"BANDITD_STORE": "mysql://u:pw@h/d"})
    settings = load(environ={"BANDITD_STORE": "postgres://u:pw@h/d", "BANDITD_DB": "x.db"})
    assert (settings.location.kind, settings.location.target) == ("postgresql", settings.store)
    assert load(environ={"BANDITD_DB": "x.db"}).location.target == "x.db"


def test_the_variables_have_the_documented_names() -> None:
    assert env_name("port") == "BANDITD_PORT"
    assert env_name("learn_batch") == "BANDITD_LEARN_BATCH"
    assert env_name("watch.window") == "BANDITD_WATCH_WINDOW"
    # The names the keys had before every setting had a variable.
    assert env_name("client_keys") == "BANDITD_CLIENT_KEY"
    assert env_name("admin_keys") == "BANDITD_ADMIN_KEY"
    assert env_name("model_signing_key") == "BANDITD_MODEL_SIGNING_KEY"


def test_precedence_is_defaults_then_file_then_environment_then_flags(tmp_path: Path) -> None:
    text = "port = 1001\nlearn_batch = 7\nkeep_models = 5\n[watch]\nwindow = 10\nalpha = 0.2"
    assert _load_file(tmp_path, text).port == 1001
    environ = {"BANDITD_PORT": "1002", "BANDITD_LEARN_BATCH": "8", "BANDITD_WATCH_WINDOW": "300"}
    config = tmp_path / "banditd.toml"
    settings = load(config_file=str(config), environ=environ, overrides={"port": 1003, "db": None})
    assert settings.port == 1003  # flag over environment over file
    assert settings.learn_batch == 8  # environment over file
    assert settings.keep_models == 5  # file over default
    assert settings.max_actions == Settings().max_actions  # default
    assert settings.db == Settings().db  # a flag left out (None) changes nothing
    # A variable replaces one key of the [watch] table, not the whole table.
    assert settings.watch == {"window": 300, "alpha": 0.2}


def test_an_empty_variable_is_unset_and_other_banditd_variables_are_left_alone() -> None:
    environ = {"BANDITD_PORT": "", "BANDITD_ADMIN_KEY": "", "BANDITD_FUZZ_CASES": "12"}
    assert load(environ=environ) == Settings()


def test_every_source_is_checked_even_where_a_later_one_overrides_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^port: .* \(from BANDITD_PORT\)$"):
        load(environ={"BANDITD_PORT": "abc"}, overrides={"port": 0})
    with pytest.raises(SettingsError, match=r"^watch\.min_events: .* \(in .*banditd\.toml\)$"):
        _load_file(tmp_path, "[watch]\nmin_events = 1", {"BANDITD_WATCH_MIN_EVENTS": "50"})


def test_file_values_take_the_type_of_their_setting(tmp_path: Path) -> None:
    settings = _load_file(
        tmp_path, 'client_keys = "c1, c2"\nlearn_interval = 1\n[watch]\nmargin = 1'
    )
    assert settings.client_keys == ("c1", "c2")  # one text, comma-separated, as before
    assert type(settings.learn_interval) is float and settings.learn_interval == 1.0
    assert type(settings.watch["margin"]) is float and settings.watch["margin"] == 1.0


def test_check_validates_settings_built_in_code() -> None:
    assert Settings().check() == Settings()
    with pytest.raises(SettingsError, match=r"^header_timeout: expected `float`, got `str`$"):
        Settings(header_timeout="x").check()  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=r"^watch\.windw: unknown setting$"):
        Settings(watch={"windw": 10}).check()
    with pytest.raises(SettingsError, match=r"^learn_batch: expected `int` >= 1$"):
        Settings(learn_batch=0).check()


def _documented(section: str) -> dict[str, str]:
    """The first two columns (setting, environment variable) of each row of a docs table."""
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `")]
    return {name.strip().strip("`"): var.strip().strip("`") for name, var in rows}


def test_the_settings_doc_lists_the_variable_of_every_setting() -> None:
    top, watch = (DOCS / "settings.md").read_text().split("## The `[watch]` table")
    assert _documented(top) == {name: env_name(name) for name in EVERY_SETTING}
    assert _documented(watch) == {key: env_name(f"watch.{key}") for key in EVERY_WATCH_SETTING}


def test_the_access_log_is_off_unless_set(tmp_path: Path) -> None:
    assert load(environ={}).access_log is False
    config = tmp_path / "banditd.toml"
    config.write_text("access_log = true\n")
    assert load(config_file=str(config), environ={}).access_log is True
    with pytest.raises(SettingsError) as error:
        load(environ={"BANDITD_ACCESS_LOG": "yes"})
    assert str(error.value) == "access_log: expected `bool`, got `str` (from BANDITD_ACCESS_LOG)"
