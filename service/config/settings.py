"""Service settings from the environment (WATTKEEPER_*) and an optional `.env` file."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.config.credentials import HIDDEN, read_dotenv, redact_url

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
MIN_PRODUCTION_KEY_CHARS = 16


def parse_api_keys(text: str) -> dict[str, Role]:
    """'key:role,key:role' -> {key: role}; a bad entry raises ValueError naming it."""
    keys: dict[str, Role] = {}
    for number, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        key, sep, role = entry.rpartition(":")
        key, role = key.strip(), role.strip()
        if not sep or not key:
            raise ValueError(f"API key entry {number} is not 'key:role'")
        if role not in ROLES:
            # Not echoed: written the wrong way round ('role:key'), the "role" is the key.
            raise ValueError(f"API key entry {number} has no role of {', '.join(ROLES)} after its last ':'")
        if key in keys:
            raise ValueError(f"API key entry {number} repeats an earlier key")
        keys[key] = role
    return keys


def async_database_url(url: str) -> str:
    """A database URL with wattkeeper's async driver: sqlite -> aiosqlite, postgresql -> asyncpg."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"'{redact_url(url)}' is not a database URL")
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database '{scheme[:40]}'; use sqlite:///path or postgresql://...")


def bus_servers(url: str) -> list[str]:
    """'nats://a:4222,nats://b:4222' -> the server URLs; ValueError naming a bad entry."""
    out = []
    for n, raw in enumerate(url.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        if not entry.startswith(("nats://", "tls://")) or len(entry.split("://", 1)[1]) == 0:
            raise ValueError(f"WATTKEEPER_BUS_URL entry {n} is not nats://host:port (or tls://host:port)")
        out.append(entry)
    if not out:
        raise ValueError("WATTKEEPER_BUS_URL names no server")
    return out


def _url_of(url: str, *schemes: str) -> str:
    """`url` when it starts with one of `schemes` (as `mqtt://`), else a ValueError naming them."""
    prefixes = tuple(f"{scheme}://" for scheme in schemes)
    if not url.startswith(prefixes):
        raise ValueError(f"'{redact_url(url)}' is not an {' or '.join(prefixes)} URL")
    return url


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    # hide_input_in_errors: a rejected value may be an API key or a token; keep it out of logs.
    model_config = SettingsConfigDict(
        env_prefix="WATTKEEPER_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    env: Literal["development", "production", "test"] = "development"
    mqtt_url: str | None = None
    database_url: str = "sqlite:///./var/wattkeeper.db"
    influx_url: str | None = None
    influx_token: str = ""
    influx_org: str = ""
    influx_bucket: str = "wattkeeper"
    # NoDecode: the value is 'key:role,...', not JSON.
    api_keys: Annotated[dict[str, Role], NoDecode] = {}
    http_port: int = Field(8000, ge=1, le=65535)
    sim_port: int = Field(8100, ge=1, le=65535)
    data_dir: Path = Path("./var")
    # FastAPI's native OpenTelemetry (tracing, metrics, logs through the global providers).
    otel: bool = False
    # Largest request body the API reads; a larger one is answered 413 before it is parsed.
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # The address `serve` listens on: 127.0.0.1 keeps the dashboard local; 0.0.0.0 opens it to the network.
    http_host: str = "127.0.0.1"
    # Extra device profiles (YAML); wins over the site file's `profiles_dir`.
    profiles_dir: Path | None = None
    # Dashboard cookie signing secret; unset: <data_dir>/session.key, made 0600 on first start.
    session_secret: SecretStr | None = None
    # Scale-out over NATS JetStream (docs/scale-out.md); unset: one process, no bus.
    bus_url: str | None = None
    bus_stream: str = Field("WATTKEEPER", pattern=r"^[A-Za-z0-9_-]+$")
    bus_lease_s: float = Field(10.0, ge=0.5, le=300.0)
    bus_buffer_max_bytes: int = Field(64 * 1024 * 1024, ge=4096)
    bus_buffer_policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    bus_batch_s: float = Field(0.2, gt=0, le=10)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, v: object) -> object:
        return parse_api_keys(v) if isinstance(v, str) else v

    @field_validator("database_url")
    @classmethod
    def _database(cls, v: str) -> str:
        async_database_url(v)
        return v

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt(cls, v: str | None) -> str | None:
        return v if v is None else _url_of(v, "mqtt", "mqtts")

    @field_validator("bus_url")
    @classmethod
    def _bus(cls, v: str | None) -> str | None:
        if not v:
            return None
        bus_servers(v)
        return v

    @field_validator("influx_url")
    @classmethod
    def _influx(cls, v: str | None) -> str | None:
        return _url_of(v, "http", "https") if v else None

    @model_validator(mode="after")
    def _production_safe(self) -> Settings:
        if self.env != "production":
            return self
        # Entries by position only: no character of a key, nor its length, goes into a message.
        short = [str(n) for n, k in enumerate(self.api_keys, start=1) if len(k) < MIN_PRODUCTION_KEY_CHARS]
        if short:
            raise ValueError(
                f"in production every API key needs >= {MIN_PRODUCTION_KEY_CHARS} characters; "
                f"WATTKEEPER_API_KEYS entries too short: {', '.join(short)}"
            )
        if self.influx_url and not self.influx_token:
            raise ValueError("in production WATTKEEPER_INFLUX_URL needs WATTKEEPER_INFLUX_TOKEN")
        return self


def setting_from_env(name: str) -> str | None:
    """A WATTKEEPER_* value as Settings sees it: the process environment first, then `.env`."""
    value = os.environ.get(name)
    if value is not None:
        return value
    return read_dotenv().get(name)


@dataclass(frozen=True, kw_only=True)
class SettingInfo:
    """One setting: its variable, the site-file key it overrides, its default and who reads it."""

    env: str
    meaning: str
    default: str  # "" when unset means none
    read_by: str
    site_key: str | None = None
    secret: bool = False


# Every setting wattkeeper reads. README "Configuration reference" and `wattkeeper config` show this table.
SETTINGS: tuple[SettingInfo, ...] = (
    SettingInfo(
        env="WATTKEEPER_ENV",
        meaning="`production` refuses API keys under 16 characters and an InfluxDB URL without a token",
        default="development",
        read_by="serve, demo",
    ),
    SettingInfo(
        env="WATTKEEPER_MQTT_URL",
        meaning="the broker: `mqtt://[user:pass@]host:port`, `mqtts://` for TLS",
        default="mqtt://127.0.0.1:1883",
        read_by="serve, simulate, demo",
        site_key="mqtt.url",
        secret=True,
    ),
    SettingInfo(
        env="WATTKEEPER_DATABASE_URL",
        meaning="the state store: `sqlite:///path` (relative to the current directory) or `postgresql://...`",
        default="sqlite:///./var/wattkeeper.db",
        read_by="serve, demo, keys, report",
        secret=True,
    ),
    SettingInfo(
        env="WATTKEEPER_INFLUX_URL",
        meaning="InfluxDB for raw telemetry; unset: no InfluxDB",
        default="",
        read_by="serve",
    ),
    SettingInfo(env="WATTKEEPER_INFLUX_TOKEN", meaning="its token", default="", read_by="serve", secret=True),
    SettingInfo(env="WATTKEEPER_INFLUX_ORG", meaning="its organisation", default="", read_by="serve"),
    SettingInfo(env="WATTKEEPER_INFLUX_BUCKET", meaning="its bucket", default="wattkeeper", read_by="serve"),
    SettingInfo(
        env="WATTKEEPER_API_KEYS",
        meaning="bootstrap API keys `key:role,key:role` (roles viewer, operator, admin)",
        default="",
        read_by="serve",
        secret=True,
    ),
    SettingInfo(
        env="WATTKEEPER_HTTP_HOST",
        meaning="the address `serve` listens on; `0.0.0.0` opens the dashboard to the network",
        default="127.0.0.1",
        read_by="serve",
    ),
    SettingInfo(
        env="WATTKEEPER_HTTP_PORT",
        meaning="the service's HTTP port (`--port` wins)",
        default="8000",
        read_by="serve",
    ),
    SettingInfo(
        env="WATTKEEPER_SIM_PORT",
        meaning="the simulators' control API port (`--port` wins)",
        default="8100",
        read_by="simulate",
    ),
    SettingInfo(
        env="WATTKEEPER_DATA_DIR",
        meaning="where `serve` keeps the telemetry outbox and the session secret (relative to the current directory)",
        default="./var",
        read_by="serve, demo",
    ),
    SettingInfo(
        env="WATTKEEPER_PROFILES_DIR",
        meaning="a directory of extra device profiles (YAML); relative `profiles_dir` is from the site file",
        default="",
        read_by="every command that reads a site file",
        site_key="profiles_dir",
    ),
    SettingInfo(
        env="WATTKEEPER_MAX_BODY_BYTES",
        meaning="the largest request body the API reads; a larger one is answered 413",
        default="1048576",
        read_by="serve",
    ),
    SettingInfo(
        env="WATTKEEPER_SESSION_SECRET",
        meaning="the dashboard's cookie signing secret; unset: `<data_dir>/session.key` (0600, made on first start)",
        default="",
        read_by="serve, demo, rotate-session-secret",
        secret=True,
    ),
    SettingInfo(
        env="WATTKEEPER_BUS_URL",
        meaning="NATS JetStream `nats://host:port[,...]`: `collect` publishes readings, `serve` owns sites by lease "
        "(docs/scale-out.md); unset: one process, no bus",
        default="",
        read_by="serve, collect",
        secret=True,
    ),
    SettingInfo(
        env="WATTKEEPER_BUS_STREAM",
        meaning="the JetStream stream of the deployment",
        default="WATTKEEPER",
        read_by="serve, collect",
    ),
    SettingInfo(
        env="WATTKEEPER_BUS_LEASE_S",
        meaning="a site's lease: a core (or collector) that stops renewing it loses the site after this long",
        default="10.0",
        read_by="serve, collect",
    ),
    SettingInfo(
        env="WATTKEEPER_BUS_BUFFER_MAX_BYTES",
        meaning="the collector's disk buffer while the bus is unreachable",
        default="67108864",
        read_by="collect",
    ),
    SettingInfo(
        env="WATTKEEPER_BUS_BUFFER_POLICY",
        meaning="what a full buffer drops (`drop_oldest` or `drop_newest`), counted as telemetry_dropped",
        default="drop_oldest",
        read_by="collect",
    ),
    SettingInfo(
        env="WATTKEEPER_BUS_BATCH_S",
        meaning="how long the collector gathers readings into one message",
        default="0.2",
        read_by="collect",
    ),
    SettingInfo(
        env="WATTKEEPER_OTEL",
        meaning="FastAPI's native OpenTelemetry through the global providers",
        default="false",
        read_by="serve",
    ),
)

Origin = Literal["environment", ".env", "site file", "default"]


@dataclass(frozen=True, kw_only=True)
class Effective:
    """A setting's value as a command would use it, shown safely, and where it came from."""

    env: str
    shown: str
    origin: Origin
    note: str = ""


def mask(info: SettingInfo, value: str) -> str:
    """A value fit to print: URLs without their passwords, keys and tokens not at all."""
    if not info.secret:
        return value
    if "://" in value:
        return redact_url(value)
    if info.env == "WATTKEEPER_API_KEYS":
        try:
            roles = list(parse_api_keys(value).values())
        except ValueError:
            return f"{HIDDEN} (not 'key:role,...')"
        return f"{HIDDEN} ({len(roles)} key(s): {', '.join(roles)})" if roles else "(none)"
    return f"{HIDDEN} (set)" if value else "(empty)"


def _sqlite_note(url: str) -> str:
    path = sqlite_path(url)
    if path is None:
        return ""
    where = path.resolve()
    return f"= {where}" + ("" if where.is_file() else " (does not exist yet)")


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///path` URL (relative to the current directory), None for another database."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] != "sqlite":
        return None
    path = rest[1:] if rest.startswith("/") else rest
    return None if path in ("", ":memory:") else Path(path)


def effective_settings(site_values: Mapping[str, str] | None = None) -> list[Effective]:
    """Every setting with its value and origin: environment, then `.env`, then the site file, then the default."""
    dotenv = read_dotenv()
    out = []
    for info in SETTINGS:
        origin: Origin
        if info.env in os.environ:
            value, origin = os.environ[info.env], "environment"
        elif info.env in dotenv:
            value, origin = dotenv[info.env], ".env"
        elif info.site_key and site_values and info.site_key in site_values:
            value, origin = site_values[info.site_key], "site file"
        else:
            value, origin = info.default, "default"
        if origin == "default" and not info.default:
            out.append(Effective(env=info.env, shown="(none)", origin=origin))
            continue
        note = ""
        if info.env == "WATTKEEPER_DATABASE_URL":
            note = _sqlite_note(value)
        elif info.env == "WATTKEEPER_DATA_DIR":
            note = f"= {Path(value).resolve()}"
        out.append(Effective(env=info.env, shown=mask(info, value), origin=origin, note=note))
    return out


def site_references(data: object) -> list[str]:
    """The variables a parsed site file names as `${NAME}` in its values (notification secrets), once each."""
    found: list[str] = []
    stack = [data]
    while stack:
        item = stack.pop(0)
        if isinstance(item, str):
            found += re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", item)
        elif isinstance(item, dict):
            stack += list(item.values())
        elif isinstance(item, list):
            stack += item
    return list(dict.fromkeys(found))
