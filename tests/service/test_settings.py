"""Settings from WATTKEEPER_* and .env; API key parsing; production refusals; async URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config.settings import Settings, async_database_url, parse_api_keys


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No WATTKEEPER_* from the caller's shell, no .env from the work tree."""
    import os

    for name in list(os.environ):
        if name.startswith("WATTKEEPER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = Settings()
    assert s.database_url == "sqlite:///./var/wattkeeper.db"
    assert (s.http_port, s.sim_port) == (8000, 8100)
    assert s.influx_url is None and s.mqtt_url is None and s.api_keys == {}
    assert s.data_dir == Path("./var")


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WATTKEEPER_HTTP_PORT=9000\nWATTKEEPER_INFLUX_URL=http://127.0.0.1:8086\nOTHER=1\n")
    monkeypatch.setenv("WATTKEEPER_HTTP_PORT", "9100")
    monkeypatch.setenv("WATTKEEPER_API_KEYS", "k1-0123456789abcdef:admin, k2:viewer")
    monkeypatch.setenv("WATTKEEPER_MQTT_URL", "mqtts://user:pw@broker:8883")
    monkeypatch.setenv("WATTKEEPER_DATABASE_URL", "postgresql://wk@db/wattkeeper")
    s = Settings()
    assert s.http_port == 9100
    assert s.influx_url == "http://127.0.0.1:8086"
    assert s.api_keys == {"k1-0123456789abcdef": "admin", "k2": "viewer"}
    assert s.mqtt_url == "mqtts://user:pw@broker:8883"
    assert async_database_url(s.database_url) == "postgresql+asyncpg://wk@db/wattkeeper"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("abc", "entry 1 is not 'key:role'"),
        ("abc:root", "entry 1 has no role of viewer, operator, admin after its last ':'"),
        ("a:admin,:viewer", "entry 2 is not 'key:role'"),
        ("a:admin,a:viewer", "entry 2 repeats"),
    ],
)
def test_bad_api_keys_are_named(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_api_keys(text)


def test_bad_api_keys_in_env_do_not_echo_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # Neither part is echoed: written the wrong way round ('admin:key'), the "role" is the key.
    for entry in ("s3cret-key-value:superuser", "admin:s3cret-key-value"):
        monkeypatch.setenv("WATTKEEPER_API_KEYS", entry)
        with pytest.raises(ValidationError) as info:
            Settings()
        assert "entry 1" in str(info.value) and "s3cret" not in str(info.value) and "superuser" not in str(info.value)


def test_keys_may_contain_colons() -> None:
    assert parse_api_keys("a:b:c:operator") == {"a:b:c": "operator"}


def test_production_refuses_short_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTKEEPER_ENV", "production")
    monkeypatch.setenv("WATTKEEPER_API_KEYS", "short:admin")
    with pytest.raises(ValidationError, match="16 characters"):
        Settings()
    monkeypatch.setenv("WATTKEEPER_API_KEYS", "a-long-enough-key-123:admin")
    assert Settings().api_keys == {"a-long-enough-key-123": "admin"}
    monkeypatch.setenv("WATTKEEPER_INFLUX_URL", "http://influx:8086")
    with pytest.raises(ValidationError, match="INFLUX_TOKEN"):
        Settings()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("WATTKEEPER_DATABASE_URL", "mysql://x/y"),
        ("WATTKEEPER_MQTT_URL", "tcp://broker:1883"),
        ("WATTKEEPER_INFLUX_URL", "influx:8086"),
        ("WATTKEEPER_HTTP_PORT", "70000"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./var/wattkeeper.db", "sqlite+aiosqlite:///./var/wattkeeper.db"),
        ("sqlite:////abs/wk.db", "sqlite+aiosqlite:////abs/wk.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://postgres@127.0.0.1:5432/wk", "postgresql+asyncpg://postgres@127.0.0.1:5432/wk"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_async_database_url(url: str, expected: str) -> None:
    assert async_database_url(url) == expected


def test_async_database_url_refuses_others() -> None:
    with pytest.raises(ValueError):
        async_database_url("mysql://x/y")
    with pytest.raises(ValueError):
        async_database_url("not a url")
