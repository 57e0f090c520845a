"""deploy/docker-compose.yml and the image, checked without a Docker engine: the file is valid for the
Compose specification's JSON schema, every file it mounts exists, every service is health-checked,
every piece of state is in a volume, and the InfluxDB init script does what the image expects."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from service.config.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROOT = DEPLOY.parent
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
# The Compose specification's schema, vendored: tests/deploy/schemas/README.md has its source and licence.
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, nested."""
    out = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            body = text[i + 2 : j - 1]
            m = re.fullmatch(r"(\w+)(?:(:?[-?])(.*))?", body, re.S)
            assert m, f"bad substitution ${{{body}}}"
            name, op, arg = m.groups()
            value = env.get(name)
            if op in (":-", "-"):
                if value is None or (op == ":-" and not value):
                    value = interpolate(arg, env)
            elif op in (":?", "?") and (value is None or (op == ":?" and not value)):
                raise KeyError(f"{name} is required: {arg}")
            out.append(value or "")
            i = j
        elif text[i] == "$" and re.match(r"\$\w", text[i:]):
            m = re.match(r"\$(\w+)", text[i:])
            assert m
            out.append(env.get(m.group(1), ""))
            i += len(m.group(0))
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def resolved(env: dict[str, str]) -> dict[str, Any]:
    """The compose file with variables substituted, as `docker compose config` would see it."""
    text = (DEPLOY / "docker-compose.yml").read_text()
    data = yaml.safe_load(text)

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return interpolate(node, env)
        if isinstance(node, list):
            return [walk(n) for n in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    return walk(data)  # type: ignore[no-any-return]


def env_example() -> dict[str, str]:
    """deploy/.env.example as docker compose reads it."""
    out = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: '{line}' is not KEY=value"
            out[key.strip()] = value.strip()
    return out


def filled_env() -> dict[str, str]:
    """.env.example with every empty secret filled, as an operator would."""
    env = env_example()
    for key, value in env.items():
        if not value and ("PASSWORD" in key or key == "INFLUX_TOKEN"):
            env[key] = f"{key.lower().replace('_', '')}0123456789abcdef"
    env["WATTKEEPER_API_KEYS"] = "0123456789abcdef0123:admin,fedcba9876543210fedc:viewer"
    return env


def schema_errors(document: Any) -> list[str]:
    """Where and why a compose document breaks the Compose specification's schema."""
    validator = jsonschema_rs.validator_for(json.loads(COMPOSE_SCHEMA.read_text()))
    return [f"/{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_vendored_compose_schema_is_the_recorded_one() -> None:
    assert hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest() == COMPOSE_SCHEMA_SHA256


def test_compose_file_is_valid_for_the_compose_specification() -> None:
    # As written, and as `docker compose` validates it: after variable substitution from .env.
    assert schema_errors(COMPOSE) == []
    assert schema_errors(resolved(filled_env())) == []


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("services", "mosquitto", "healthcheck", "intervall"), "5s", "'intervall' was unexpected"),
        (("services", "wattkeeper", "depends_on", "mosquitto", "condition"), "service_ready", "oneOf"),
        (("services", "grafana", "restart"), ["always"], "not of type"),
        (("volumes", "grafana-data"), "named", "not of type"),
    ],
)
def test_schema_check_reports_a_broken_compose_file(path: tuple[str, ...], value: Any, complaint: str) -> None:
    broken = json.loads(json.dumps(resolved(filled_env())))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = schema_errors(broken)
    assert any(complaint in e for e in errors), errors


def test_services_and_profiles() -> None:
    assert set(SERVICES) == {"mosquitto", "influxdb", "grafana", "wattkeeper", "simulators"}
    assert SERVICES["simulators"]["profiles"] == ["simulators"]
    assert all("profiles" not in s for name, s in SERVICES.items() if name != "simulators")
    assert SERVICES["wattkeeper"]["command"] == ["serve", "--site", "/etc/wattkeeper/site.yaml"]
    assert SERVICES["simulators"]["command"][:3] == ["simulate", "--site", "/etc/wattkeeper/site.yaml"]
    assert SERVICES["influxdb"]["image"].startswith("influxdb:2.7")
    assert SERVICES["mosquitto"]["image"].startswith("eclipse-mosquitto:2.")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana-oss:")


def test_every_service_is_health_checked_and_dependencies_wait_for_health() -> None:
    for name, svc in SERVICES.items():
        check = svc.get("healthcheck", {})
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        assert svc.get("restart") == "unless-stopped", name
    for dep in ("mosquitto", "influxdb"):
        assert SERVICES["wattkeeper"]["depends_on"][dep]["condition"] == "service_healthy"
    assert SERVICES["grafana"]["depends_on"]["influxdb"]["condition"] == "service_healthy"


def test_every_mounted_file_exists() -> None:
    compose = resolved(filled_env())
    mounted = 0
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
                mounted += 1
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
        build = svc.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    assert mounted >= 8


STATE = {
    "mosquitto": ["/mosquitto/data"],
    "influxdb": ["/var/lib/influxdb2", "/etc/influxdb2"],
    "grafana": ["/var/lib/grafana"],
    "wattkeeper": ["/var/lib/wattkeeper"],
}


def test_every_piece_of_state_is_in_a_named_volume() -> None:
    for name, paths in STATE.items():
        named = {v.split(":")[1]: v.split(":")[0] for v in SERVICES[name]["volumes"] if not v.startswith((".", "$"))}
        for path in paths:
            assert path in named, f"{name}: {path} is not on a named volume"
    assert set(COMPOSE["volumes"]) == {
        "mosquitto-data",
        "influxdb-data",
        "influxdb-config",
        "grafana-data",
        "wattkeeper-data",
    }


def test_required_secrets_have_no_default_and_are_in_the_env_example() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    example = env_example()
    assert used <= set(example), f"not in .env.example: {sorted(used - set(example))}"
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert {
        "MQTT_WATTKEEPER_PASSWORD",
        "INFLUX_TOKEN",
        "INFLUX_ADMIN_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "WATTKEEPER_API_KEYS",
    } <= required
    for key in required:
        assert example[key] == "", f".env.example must not ship a value for the secret {key}"
    with pytest.raises(KeyError, match="MQTT_WATTKEEPER_PASSWORD"):
        resolved(env_example())


def test_influxdb_is_initialised_with_org_bucket_token_and_dbrp() -> None:
    env = SERVICES["influxdb"]["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for key in ("USERNAME", "PASSWORD", "ORG", "BUCKET", "ADMIN_TOKEN"):
        assert f"DOCKER_INFLUXDB_INIT_{key}" in env
    assert "./influxdb/init:/docker-entrypoint-initdb.d:ro" in SERVICES["influxdb"]["volumes"]


INIT_DIR = DEPLOY / "influxdb" / "init"
# What the influxdb:2.7 image's entrypoint exports to the init scripts after `influx setup`.
INIT_ENV = {
    "DOCKER_INFLUXDB_INIT_ORG": "wattkeeper",
    "DOCKER_INFLUXDB_INIT_BUCKET": "wattkeeper",
    "DOCKER_INFLUXDB_INIT_BUCKET_ID": "0123456789abcdef",
}


def run_init_scripts(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """deploy/influxdb/init run as the image runs it (run-parts), the `influx` CLI recording its arguments.

    No InfluxDB 2.x or its CLI is available here: the recorder stands in for the CLI only to show
    which commands the script runs; the flags are those of `influx v1 dbrp create` in InfluxDB's CLI
    reference (--org, --bucket-id, --db, --rp, --default).
    """
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls.jsonl"
    recorder = bindir / "influx"
    recorder.write_text(
        f"#!{sys.executable}\nimport json, sys\nopen({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    recorder.chmod(0o755)
    done = subprocess.run(
        ["run-parts", "--regex", ".*sh$", "--report", "--exit-on-error", str(INIT_DIR)],
        env={"PATH": f"{bindir}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    made = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return done, made


def test_dbrp_script_runs_under_run_parts_and_maps_the_bucket_as_the_default(tmp_path: Path) -> None:
    # run-parts runs only executable files whose name matches, exactly as the image's entrypoint does.
    assert os.access(INIT_DIR / "10-dbrp.sh", os.X_OK)
    done, calls = run_init_scripts(tmp_path, INIT_ENV)
    assert done.returncode == 0, done.stderr
    assert calls == [
        [
            "v1", "dbrp", "create", "--org", "wattkeeper", "--bucket-id", "0123456789abcdef", "--db", "wattkeeper",
            "--rp", "autogen", "--default",
        ]
    ]  # fmt: skip
    # The database Grafana's data source names is the bucket the service writes.
    compose = resolved(filled_env())
    assert compose["services"]["grafana"]["environment"]["INFLUX_BUCKET"] == calls[0][calls[0].index("--db") + 1]


def test_dbrp_script_stops_initialisation_without_the_bucket_id(tmp_path: Path) -> None:
    env = {k: v for k, v in INIT_ENV.items() if k != "DOCKER_INFLUXDB_INIT_BUCKET_ID"}
    done, calls = run_init_scripts(tmp_path, env)
    assert done.returncode != 0 and "DOCKER_INFLUXDB_INIT_BUCKET_ID" in done.stderr
    assert calls == []


def test_grafana_datasource_reads_the_bucket_the_service_writes() -> None:
    compose = resolved(filled_env())
    grafana = compose["services"]["grafana"]["environment"]
    service = compose["services"]["wattkeeper"]["environment"]
    influx = compose["services"]["influxdb"]["environment"]
    provisioned = yaml.safe_load((ROOT / "dashboards" / "provisioning" / "datasources" / "wattkeeper.yaml").read_text())
    for var in set(re.findall(r"\$\{(\w+)\}", str(provisioned))):
        assert grafana.get(var), f"the data source needs {var} in Grafana's environment"
    assert grafana["INFLUX_BUCKET"] == service["WATTKEEPER_INFLUX_BUCKET"] == influx["DOCKER_INFLUXDB_INIT_BUCKET"]
    assert service["WATTKEEPER_INFLUX_ORG"] == influx["DOCKER_INFLUXDB_INIT_ORG"]
    assert grafana["INFLUX_TOKEN"] == service["WATTKEEPER_INFLUX_TOKEN"] == influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert grafana["INFLUX_URL"] == service["WATTKEEPER_INFLUX_URL"] == "http://influxdb:8086"


def test_service_environment_is_accepted_by_the_service_settings() -> None:
    env = filled_env()
    compose = resolved(env)
    service = compose["services"]["wattkeeper"]["environment"]
    prefix = "WATTKEEPER_"
    fields = {k[len(prefix) :].lower(): v for k, v in service.items() if k.startswith(prefix)}
    settings = Settings(_env_file=None, **fields)
    assert settings.env == "production"
    assert settings.mqtt_url == (
        f"mqtts://wattkeeper:{env['MQTT_WATTKEEPER_PASSWORD']}@mosquitto:8883?ca=/etc/wattkeeper/mqtt-certs/ca.crt"
    )
    assert settings.database_url == "sqlite:////var/lib/wattkeeper/wattkeeper.db"
    assert settings.api_keys and set(settings.api_keys.values()) <= {"viewer", "operator", "admin"}
    assert settings.http_port == 8000
    sims = compose["services"]["simulators"]
    assert sims["environment"]["WATTKEEPER_MQTT_URL"].startswith("mqtts://simulators:")
    assert sims["network_mode"] == "service:wattkeeper", "the site's 127.0.0.1 Modbus devices are the simulators"


def test_shell_scripts_parse() -> None:
    for script in (DEPLOY / "mosquitto" / "make-passwd.sh", DEPLOY / "influxdb" / "init" / "10-dbrp.sh"):
        subprocess.run(["sh", "-n", str(script)], check=True)


def dockerfile() -> list[tuple[str, str]]:
    lines = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines if ln.strip() and not ln.startswith("#")
    ]


def test_image_installs_the_package_and_runs_as_a_user() -> None:
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert "pip install ." in runs
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("ENTRYPOINT", '["wattkeeper"]') in instructions
    assert ("CMD", '["serve", "--site", "/etc/wattkeeper/site.yaml"]') in instructions


def test_image_copies_only_what_exists_and_the_build_context_sends() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    sent = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for op, arg in dockerfile():
        if op != "COPY":
            continue
        sources = [a for a in arg.split() if not a.startswith("--")][:-1]
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
            assert src.rstrip("/") in sent, f"COPY {src}: left out of the build context by Dockerfile.dockerignore"
