#!/bin/sh
# Runs once, when the official influxdb:2.7 image initialises an empty data volume
# (DOCKER_INFLUXDB_INIT_MODE=setup): map the InfluxQL database "<bucket>" with retention
# policy "autogen" to the bucket, so Grafana's InfluxQL boards and InfluxDB 1.x clients work.
set -eu
db="${DOCKER_INFLUXDB_INIT_BUCKET:?}"
if influx v1 dbrp list --org "${DOCKER_INFLUXDB_INIT_ORG:?}" --db "$db" 2>/dev/null | grep -q "$db"; then
  echo "DBRP mapping for $db exists"
  exit 0
fi
influx v1 dbrp create \
  --org "$DOCKER_INFLUXDB_INIT_ORG" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID:?}" \
  --db "$db" \
  --rp autogen \
  --default
echo "DBRP mapping created: $db/autogen -> bucket $db"
