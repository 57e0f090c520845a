"""Service settings from the environment (WATTKEEPER_*) and an optional `.env` file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.credentials import redact_url

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
        if v is not None and not v.startswith(("mqtt://", "mqtts://")):
            raise ValueError(f"'{redact_url(v)}' is not an mqtt:// or mqtts:// URL")
        return v

    @field_validator("bus_url")
    @classmethod
    def _bus(cls, v: str | None) -> str | None:
        if not v:
            return None
        from service.bus import bus_servers

        bus_servers(v)
        return v

    @field_validator("influx_url")
    @classmethod
    def _influx(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"'{redact_url(v)}' is not an http:// or https:// URL")
        return v

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
