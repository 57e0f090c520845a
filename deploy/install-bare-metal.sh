#!/bin/sh
# Install wattkeeper with Mosquitto and systemd on stock Debian 12 / Ubuntu 22.04 or later
# (deploy/README.md, "Bare metal"). From a checkout of the repository:
#
#   sudo sh deploy/install-bare-metal.sh path/to/site.yaml
#
# Running it again is safe: secrets already in /etc/wattkeeper/wattkeeper.env are kept, the site
# file and the configs are replaced. The service starts only after `wattkeeper check` accepted
# the site file with these settings.
#
# DESTDIR=/some/dir writes every file under that directory and changes nothing else on the
# machine (no apt-get, no user, no systemctl): the test suite runs it so. WATTKEEPER_VENV=DIR
# uses an existing virtualenv with wattkeeper installed instead of making /opt/wattkeeper/venv.
set -eu

site="${1:?usage: install-bare-metal.sh SITE_FILE}"
here="$(cd "$(dirname "$0")" && pwd)"
root="${DESTDIR:-}"

# A step that changes the machine itself: skipped (and said) under DESTDIR.
system() {
  if [ -z "$root" ]; then "$@"; else echo "DESTDIR set, not run: $*"; fi
}

system apt-get install -y --no-install-recommends mosquitto mosquitto-clients python3-venv
if [ -z "$root" ] && ! id wattkeeper >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/wattkeeper --shell /usr/sbin/nologin wattkeeper
fi
group=wattkeeper

# The program: a virtualenv in /opt/wattkeeper/venv.
venv="$root/opt/wattkeeper/venv"
if [ -n "${WATTKEEPER_VENV:-}" ]; then
  mkdir -p "$root/opt/wattkeeper"
  ln -sfn "$WATTKEEPER_VENV" "$venv"
else
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "$here/.."
fi

# Settings and the site file.
install -d -m 0750 "$root/etc/wattkeeper"
[ -z "$root" ] && chgrp "$group" "$root/etc/wattkeeper"
install -m 0640 "$site" "$root/etc/wattkeeper/site.yaml"
[ -z "$root" ] && chgrp "$group" "$root/etc/wattkeeper/site.yaml"
python3 "$here/make-secrets.py" --template "$here/systemd/wattkeeper.env.example" \
  --out "$root/etc/wattkeeper/wattkeeper.env"
[ -z "$root" ] && chgrp "$group" "$root/etc/wattkeeper/wattkeeper.env" && chmod 0640 "$root/etc/wattkeeper/wattkeeper.env"

# Mosquitto: the compose config with its paths moved to Debian's. Debian's own
# /etc/mosquitto/mosquitto.conf already sets persistence_location (and includes conf.d/), and
# Mosquitto refuses a second one ("Duplicate persistence_location"): that line is left out.
install -d "$root/etc/mosquitto/conf.d"
sed -e '/^persistence_location /d' \
    -e 's#/mosquitto/config/#/etc/mosquitto/#; s#/mosquitto/data/#/var/lib/mosquitto/#; s#/mosquitto/certs/#/etc/mosquitto/certs/#' \
    "$here/mosquitto/mosquitto.conf" > "$root/etc/mosquitto/conf.d/wattkeeper.conf"
install -m 0644 "$here/mosquitto/acl" "$root/etc/mosquitto/acl"
# TLS on 8883 (docs/security.md): a local CA for the site, its key kept in /etc/wattkeeper/mqtt-ca
# (0700), and the broker's certificate for this host; an existing CA is kept, so clients that trust
# its ca.crt keep trusting the broker when the script runs again.
site_id="$("$venv/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1], encoding="utf-8"))["site"]["id"])' "$site")"
CERTS_DIR="$root/etc/mosquitto/certs" CA_DIR="$root/etc/wattkeeper/mqtt-ca" \
  sh "$here/mosquitto/make-certs.sh" "$site_id" "$(hostname -f 2>/dev/null || hostname)"
[ -z "$root" ] && chgrp mosquitto "$root/etc/mosquitto/certs/server.key" && chmod 0640 "$root/etc/mosquitto/certs/server.key"
MQTT_WATTKEEPER_PASSWORD="$(sed -n 's/^MQTT_WATTKEEPER_PASSWORD=//p' "$root/etc/wattkeeper/wattkeeper.env")" \
  sh "$here/mosquitto/make-passwd.sh" "$root/etc/mosquitto/passwd"

# The units.
install -d "$root/etc/systemd/system"
install -m 0644 "$here/systemd/wattkeeper.service" "$here/systemd/wattkeeper-simulators.service" \
  "$root/etc/systemd/system/"

# The site file, with these settings, before anything starts.
(
  set -a
  . "$root/etc/wattkeeper/wattkeeper.env"
  set +a
  "$venv/bin/wattkeeper" check --site "$root/etc/wattkeeper/site.yaml" > /dev/null
)

system systemctl restart mosquitto
system systemctl daemon-reload
system systemctl enable --now wattkeeper
echo "installed; the dashboard on port $(sed -n 's/^WATTKEEPER_HTTP_PORT=//p' "$root/etc/wattkeeper/wattkeeper.env")" \
  "with the admin key in $root/etc/wattkeeper/wattkeeper.env (WATTKEEPER_API_KEYS)"
