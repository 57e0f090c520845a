#!/usr/bin/env python3
"""Fill the empty secrets of a wattkeeper settings file, each in the format its reader expects.

    cd deploy && python3 make-secrets.py                 # .env.example -> .env (compose)
    python3 make-secrets.py --out /etc/wattkeeper/wattkeeper.env --template systemd/wattkeeper.env.example

Secrets wattkeeper owns are generated: MQTT passwords (letters and digits: they go into mqtt://
URLs unescaped), API keys as `key:role` (>= 16 characters, as production requires), the InfluxDB
and Grafana admin passwords and the InfluxDB operator token. Secrets issued by someone else — the
DingTalk robot's access_token, the WeCom key, the SMTP password — cannot be generated: give them
with `--set NAME=VALUE` (or in the environment); otherwise a placeholder is written and listed, so
`wattkeeper check` runs but those notifications fail until the real value is there.

A value already in the output file is kept, so running it again changes nothing; the file is
written with mode 0600. Only the Python standard library is used (run it before installing).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import string
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLACEHOLDER = "REPLACE-ME"


def _alnum(n: int = 32) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _api_keys() -> str:
    # One admin key; more with `wattkeeper keys create`. Letters and digits: no ',' or ':' inside.
    return f"{_alnum(40)}:admin"


# What wattkeeper (and the stack) owns: generated. Name -> generator.
GENERATED = {
    "WATTKEEPER_API_KEYS": _api_keys,
    "MQTT_WATTKEEPER_PASSWORD": _alnum,
    "MQTT_HEALTHCHECK_PASSWORD": _alnum,
    "MQTT_SIMULATORS_PASSWORD": _alnum,
    "MQTT_ZIGBEE2MQTT_PASSWORD": _alnum,
    "MQTT_TASMOTA_PASSWORD": _alnum,
    "MQTT_SHELLY_PASSWORD": _alnum,
    "MQTT_ALARMS_PASSWORD": _alnum,
    "INFLUX_ADMIN_PASSWORD": _alnum,
    "INFLUX_TOKEN": lambda: _alnum(64),
    "GRAFANA_ADMIN_PASSWORD": _alnum,
}
# Issued by someone else: only given, never invented. Name -> where it comes from.
EXTERNAL = {
    "WATTKEEPER_DINGTALK_TOKEN": "the access_token of the DingTalk robot's webhook URL",
    "WATTKEEPER_WECOM_KEY": "the key of the WeCom group robot's webhook URL",
    "WATTKEEPER_SMTP_PASSWORD": "the mail account's password (percent-encode '@', ':' and '/')",
}
# Left empty on purpose: optional scoped tokens (empty: the operator token is used).
OPTIONAL = {"WATTKEEPER_INFLUX_TOKEN", "GRAFANA_INFLUX_TOKEN"}

_LINE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def read_env(path: Path) -> dict[str, str]:
    """NAME=value lines of an env file (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            m = _LINE.match(line.strip())
            if m:
                out[m["name"]] = m["value"]
    return out


def fill(template: str, kept: dict[str, str], given: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """The template with every secret filled; also the names generated and the placeholders written."""
    made: list[str] = []
    placeholders: list[str] = []
    lines = []
    for line in template.splitlines():
        m = _LINE.match(line)
        if not m:
            lines.append(line)
            continue
        name, value = m["name"], m["value"]
        if name in given:
            value = given[name]
        elif kept.get(name):
            value = kept[name]
        elif value:
            pass
        elif name in GENERATED:
            value = GENERATED[name]()
            made.append(name)
        elif name in EXTERNAL:
            value = PLACEHOLDER
            placeholders.append(name)
        lines.append(f"{name}={value}")
    text = "\n".join(lines) + "\n"
    # A URL that names a password variable gets its value (systemd's EnvironmentFile does not expand).
    values = {m["name"]: m["value"] for m in map(_LINE.match, lines) if m}
    text = re.sub(r"\$\{(MQTT_[A-Z_]+_PASSWORD)\}", lambda m: values.get(m[1], m[0]), text)
    return text, made, placeholders


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=HERE / ".env.example", help="the example settings file")
    parser.add_argument("--out", type=Path, default=HERE / ".env", help="the settings file to write (kept values stay)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a secret issued elsewhere (repeatable)"
    )
    args = parser.parse_args(argv)
    given: dict[str, str] = {name: os.environ[name] for name in EXTERNAL if os.environ.get(name)}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not _LINE.match(f"{name}=x"):
            parser.error(f"--set {item!r}: write NAME=VALUE")
        given[name] = value
    if not args.template.is_file():
        parser.error(f"{args.template}: no such template")
    text, made, placeholders = fill(args.template.read_text(encoding="utf-8"), read_env(args.out), given)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(args.out, 0o600)
    print(f"{args.out}: {len(made)} secret(s) generated" + (f" ({', '.join(made)})" if made else ""))
    for name in placeholders:
        print(f"  {name}={PLACEHOLDER}: put {EXTERNAL[name]} here (or --set {name}=...)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
