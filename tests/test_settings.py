"""Settings: declared once, typed, read from env and TOML, all documented in the README."""
from __future__ import annotations

import re

import pytest

from config.settings import SETTINGS, SettingsError, load, markdown_rows
from tests.conftest import ROOT


def test_every_setting_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- settings:start -->")[1].split("<!-- settings:end -->")[0]
    missing = [s.name for s in SETTINGS if f"| `{s.name}` |" not in table]
    assert missing == [], f"settings missing from README (run: python -m config.settings): {missing}"
    stale = [row for row in markdown_rows() if row not in table]
    assert stale == [], f"README rows out of date (run: python -m config.settings): {stale}"


def test_every_setting_has_help_and_a_default_of_its_type():
    for s in SETTINGS:
        assert s.help and s.help.endswith((".", ")")), s.name
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", s.name)
        assert s.type(str(s.default).lower() if isinstance(s.default, bool) else str(s.default)) == s.default


@pytest.mark.parametrize("env, name, value", [
    ({}, "HTTP_PORT", 8000), ({}, "HTTP_HOST", "127.0.0.1"), ({}, "TIME_ZONE", "Asia/Shanghai"),
    ({}, "DATA_DIR", "var"), ({}, "REDIS_URL", ""), ({}, "MQTT_URL", ""), ({}, "ADMIN_PASSWORD", ""),
    ({"HTTP_PORT": "9001"}, "HTTP_PORT", 9001), ({"COOKIE_SECURE": "yes"}, "COOKIE_SECURE", True),
    ({"COOKIE_SECURE": "0"}, "COOKIE_SECURE", False), ({"TIME_ZONE": "Asia/Urumqi"}, "TIME_ZONE", "Asia/Urumqi"),
    ({"SESSION_HOURS": "0.5"}, "SESSION_HOURS", 0.5), ({"INGEST_HOLD_S": "0"}, "INGEST_HOLD_S", 0.0),
])
def test_values_from_the_environment(tmp_path, env, name, value):
    env = {"CONFIG_FILE": str(tmp_path / "none.toml"), **env}
    assert load(env).get(name) == value


@pytest.mark.parametrize("env, message", [
    ({"HTTP_PORT": "eighty"}, "HTTP_PORT"), ({"HTTP_PORT": "70000"}, "out of range"),
    ({"TIME_ZONE": "Mars/Olympus"}, "unknown time zone"), ({"SIM_VEHICLES": "0"}, "positive"),
    ({"COOKIE_SECURE": "maybe"}, "not a boolean"), ({"INGEST_HOLD_S": "-1"}, "0 or more"),
    ({"INGEST_HOLD_S": "nan"}, "INGEST_HOLD_S"), ({"INGEST_HOLD_S": "inf"}, "finite"),
])
def test_bad_values_are_refused_with_the_setting_named(tmp_path, env, message):
    with pytest.raises(SettingsError, match=message):
        load({"CONFIG_FILE": str(tmp_path / "none.toml"), **env})


def test_toml_file_then_environment_wins(tmp_path):
    config = tmp_path / "center.toml"
    config.write_text('HTTP_PORT = 8100\ntime_zone = "Asia/Urumqi"\nLOG_LEVEL = "DEBUG"\n', encoding="utf-8")
    settings = load({"CONFIG_FILE": str(config), "HTTP_PORT": "8200"})
    assert (settings.HTTP_PORT, settings.TIME_ZONE, settings.LOG_LEVEL) == (8200, "Asia/Urumqi", "DEBUG")


@pytest.mark.parametrize("text, message", [("NOPE = 1\n", "unknown setting"), ("HTTP_PORT = \n", "center.toml"),
                                           ('HTTP_PORT = "x"\n', "HTTP_PORT")])
def test_bad_toml_is_refused(tmp_path, text, message):
    config = tmp_path / "center.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError, match=message):
        load({"CONFIG_FILE": str(config)})
