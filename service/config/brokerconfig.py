"""`wattkeeper broker-config`: a Mosquitto password file and ACL with one account per MQTT device.

Each Tasmota relay and Shelly plug logs in as its own account, named after its site-file topic, and
pattern ACLs (`%u`) let it publish only its own state topics and read only its own command topic;
Zigbee devices have no MQTT connection of their own, so their bridge gets one account for its base
topic. Only the `wattkeeper` account publishes commands. Alarm consumers (`alarms`) read
`wattkeeper/<site>/alarms/#` and `…/notices/#` and nothing else.

Passwords are random, kept in `passwords` (mode 0600, `account password` per line) beside the
password file, and reused when the command runs again, so adding a device does not change the
passwords the other devices already hold.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from drivers.profiles import MqttProfile, load_profile
from service.config.site import Site

SERVICE: Final = "wattkeeper"
ALARMS: Final = "alarms"
HEALTHCHECK: Final = "healthcheck"
SIMULATORS: Final = "simulators"
# Names no device account may take: the fixed accounts, and first topic levels that belong to
# another convention (a Shelly named `cmnd` could otherwise publish `cmnd/status/...`).
RESERVED: Final = frozenset({SERVICE, ALARMS, HEALTHCHECK, SIMULATORS, "cmnd", "stat", "tele", "tasmota", "$SYS"})
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# Mosquitto 2's password hash: PBKDF2-SHA512, 101 iterations, 12-byte salt ("$7$" in the file).
_PBKDF2_ITERATIONS: Final = 101
_SALT_BYTES: Final = 12

PATTERNS: Final = """\
# Tasmota: a relay logs in as its topic; it reads its commands, publishes its state and telemetry.
pattern read cmnd/%u/#
pattern write stat/%u/#
pattern write tele/%u/#
# Shelly Gen2: a plug logs in as its id (topic prefix); it reads its RPC requests, publishes its status.
pattern read %u/rpc
pattern write %u/status/#
pattern write %u/online
pattern write %u/events/#
"""


class BrokerConfigError(ValueError):
    """A site whose MQTT devices cannot each get a safe account (the message names the device)."""


@dataclass(frozen=True, slots=True)
class Account:
    """One broker account: its name, what it stands for, and its own ACL lines (after `user`)."""

    name: str
    what: str
    topics: tuple[str, ...] = ()


def accounts(site: Site, *, simulators: bool = False) -> list[Account]:
    """Every account the site needs, the service's first; BrokerConfigError for a device that cannot have one."""
    site_id = site.site.id
    out = [
        Account(
            SERVICE,
            "the wattkeeper service: reads every device, the only account that publishes commands",
            (
                "topic read zigbee2mqtt/#",
                "topic write zigbee2mqtt/+/set",
                "topic write zigbee2mqtt/+/get",
                "topic read stat/#",
                "topic read tele/#",
                "topic write cmnd/#",
                "topic read +/status/#",
                "topic read +/online",
                "topic read +/events/#",
                "topic write +/rpc",
                f"topic read {SERVICE}-{site_id}/rpc",
                "topic readwrite wattkeeper/#",
            ),
        )
    ]
    bridges: dict[str, list[str]] = {}
    devices: list[Account] = []
    for dev in site.devices:
        if dev.driver != "mqtt" or dev.topic is None:
            continue
        profile = load_profile(dev.profile)
        assert isinstance(profile, MqttProfile)
        if profile.convention == "zigbee2mqtt":
            bridges.setdefault(dev.topic.split("/", 1)[0], []).append(dev.id)
            continue
        name = dev.topic
        if not _ACCOUNT_NAME.match(name) or name in RESERVED:
            raise BrokerConfigError(
                f"devices: {dev.id}: topic '{name}' cannot be an account name (one topic level of letters, digits,"
                f" '_', '.', '-', not one of {', '.join(sorted(RESERVED))})"
            )
        extra = (f"topic write {SERVICE}-{site_id}/rpc",) if profile.convention == "shelly-gen2" else ()
        devices.append(Account(name, f"{profile.convention} device {dev.id}", extra))
    for base, members in bridges.items():
        if base in RESERVED or any(base == d.name for d in devices):
            raise BrokerConfigError(f"devices: {members[0]}: Zigbee2MQTT base topic '{base}' is another account's")
        out.append(
            Account(
                base,
                f"Zigbee2MQTT bridge for {', '.join(members)}",
                (f"topic readwrite {base}/#",),
            )
        )
    out.extend(devices)
    out.append(
        Account(
            ALARMS,
            "alarm consumers (a building-management system, a pager gateway): alarms and notices only",
            ("topic read wattkeeper/+/alarms/#", "topic read wattkeeper/+/notices/#"),
        )
    )
    out.append(Account(HEALTHCHECK, "container healthcheck: the broker's uptime", ("topic read $SYS/broker/uptime",)))
    if simulators:
        out.append(
            Account(
                SIMULATORS,
                "the device simulators (demo and commissioning only): stand in for every device",
                (
                    "topic readwrite zigbee2mqtt/#",
                    "topic readwrite stat/#",
                    "topic readwrite tele/#",
                    "topic read cmnd/#",
                    "topic readwrite +/status/#",
                    "topic readwrite +/online",
                    "topic readwrite +/events/#",
                    "topic readwrite +/rpc",
                ),
            )
        )
    return out


def acl_text(site: Site, found: list[Account]) -> str:
    """The Mosquitto ACL file for these accounts."""
    lines = [
        f"# Mosquitto ACL for site {site.site.id}, written by `wattkeeper broker-config`; anything not granted",
        "# is refused. Device accounts are named after their topics, so the patterns below give each",
        "# one its own topics only.",
        "",
        PATTERNS,
    ]
    for account in found:
        lines.append(f"# {account.what}")
        lines.append(f"user {account.name}")
        lines.extend(account.topics)
        lines.append("")
    return "\n".join(lines)


def password_hash(password: str, salt: bytes | None = None) -> str:
    """A password as Mosquitto 2 stores it ("$7$": PBKDF2-SHA512)."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    return f"$7${_PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def read_passwords(path: Path) -> dict[str, str]:
    """`account password` lines of an earlier run (none if the file is absent)."""
    if not path.exists():
        return {}
    out = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise BrokerConfigError(f"{path.name}:{number}: expected 'account password'")
        out[parts[0]] = parts[1]
    return out


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)


def write_broker_config(
    site: Site, out_dir: Path, *, simulators: bool = False, service_password: str | None = None
) -> list[Account]:
    """Write `acl`, `passwd` (hashed) and `passwords` (plain, 0600) into out_dir; return the accounts."""
    found = accounts(site, simulators=simulators)
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = read_passwords(out_dir / "passwords")
    passwords = {a.name: kept.get(a.name) or secrets.token_urlsafe(18) for a in found}
    if service_password:
        passwords[SERVICE] = service_password
    (out_dir / "acl").write_text(acl_text(site, found), encoding="utf-8")
    _write_private(out_dir / "passwd", "".join(f"{a.name}:{password_hash(passwords[a.name])}\n" for a in found))
    header = "# account password — give each device its own; wattkeeper's goes into WATTKEEPER_MQTT_URL\n"
    _write_private(out_dir / "passwords", header + "".join(f"{a.name} {passwords[a.name]}\n" for a in found))
    return found
