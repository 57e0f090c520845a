#!/usr/bin/env bash
# Install (as root, when missing) the Debian packages the tests use. The servers
# themselves (Mosquitto, VictoriaMetrics, InfluxDB 1.x, PostgreSQL, NATS, SMTP) are started by
# the tests on free loopback ports with their data in temporary directories, and stopped
# afterwards; WATTKEEPER_TEST_POSTGRES=postgresql://... points them at a PostgreSQL of
# your own instead.
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
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need_pkgs+=(nats-server)

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
  for svc in influxdb victoria-metrics postgresql nats-server; do
    (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
  done
fi
