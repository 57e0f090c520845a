#!/usr/bin/env bash
# Install (as root, when missing) the Debian packages the tests use and make sure a
# PostgreSQL server answers on 127.0.0.1:5432. The other servers (Mosquitto,
# VictoriaMetrics, InfluxDB 1.x, SMTP) are started by the tests themselves on free
# loopback ports with their data in temporary directories.
set -euo pipefail

need_pkgs=()
# CJK glyphs for the dashboard screenshots the browser tests save
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need_pkgs+=(fonts-wqy-microhei)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_pkgs+=(mosquitto-clients)
command -v victoria-metrics >/dev/null 2>&1 || need_pkgs+=(victoria-metrics)
command -v influxd >/dev/null 2>&1 || need_pkgs+=(influxdb)
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
command -v mbpoll >/dev/null 2>&1 || need_pkgs+=(mbpoll)
command -v psql >/dev/null 2>&1 || need_pkgs+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need_pkgs[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # Debian's packages start their daemons on the default ports; the tests start their own.
  for svc in influxdb victoria-metrics; do
    (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
  done
fi

if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  exit 0
fi
# Start the packaged cluster if there is one, else a private one with trust auth on loopback.
if ls /etc/postgresql/*/main >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start 2>/dev/null || true
fi
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 0.5; done
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
data=/tmp/wattkeeper-test-pg
if [ ! -f "$data/PG_VERSION" ]; then
  install -d -o postgres "$data"
  su postgres -s /bin/sh -c "$pgbin/initdb -D $data -A trust -U postgres >/dev/null"
fi
su postgres -s /bin/sh -c "$pgbin/pg_ctl -D $data -l $data/log -o '-p 5432 -k /tmp -c listen_addresses=127.0.0.1' -w start >/dev/null"
pg_isready -h 127.0.0.1 -p 5432
