#!/bin/sh
# Write Mosquitto's password file from MQTT_<ACCOUNT>_PASSWORD variables (hashed by mosquitto_passwd).
# docker-compose.yml runs this before every broker start, so .env is the one place passwords live;
# on bare metal: sudo env $(cat /etc/wattkeeper/mqtt.env) ./make-passwd.sh /etc/mosquitto/passwd
# Accounts without a password are left out (they cannot log in); wattkeeper's is required.
set -eu
out="${1:-${MOSQUITTO_PASSWD_FILE:-/mosquitto/config/passwd}}"
tmp="$out.tmp"
umask 077
: > "$tmp"

add() {
  if [ -n "$2" ]; then
    mosquitto_passwd -b "$tmp" "$1" "$2"
  fi
}

add wattkeeper "${MQTT_WATTKEEPER_PASSWORD:?MQTT_WATTKEEPER_PASSWORD is not set}"
add simulators "${MQTT_SIMULATORS_PASSWORD:-}"
add zigbee2mqtt "${MQTT_ZIGBEE2MQTT_PASSWORD:-}"
add tasmota "${MQTT_TASMOTA_PASSWORD:-}"
add shelly "${MQTT_SHELLY_PASSWORD:-}"
add alarms "${MQTT_ALARMS_PASSWORD:-}"
add healthcheck "${MQTT_HEALTHCHECK_PASSWORD:-}"

# The broker drops root after reading its configuration; let its user read the file.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown mosquitto "$tmp"
fi
mv "$tmp" "$out"
