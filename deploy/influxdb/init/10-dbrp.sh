#!/bin/sh
# Runs once, when the official influxdb:2.7 image initialises an empty data volume
# (DOCKER_INFLUXDB_INIT_MODE=setup): its entrypoint runs the executable *.sh files here with
# run-parts, after `influx setup`, with the CLI configured for the new instance and
# DOCKER_INFLUXDB_INIT_BUCKET_ID exported. It maps the InfluxQL database "<bucket>" with
# retention policy "autogen" to the bucket, as the default, so Grafana's InfluxQL boards and
# InfluxDB 1.x clients work.
#
# The mapping is created unconditionally: InfluxDB 2.4+ lists a read-only "virtual" mapping for
# every bucket (listed as not the default), so looking the database up would find that and skip, and
# an explicit mapping is how the docs say to override it. The script never runs twice: a failed
# initialisation leaves no data behind, and a later start finds the data and skips setup.
set -eu
db="${DOCKER_INFLUXDB_INIT_BUCKET:?}"
influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG:?}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID:?set by the influxdb image after setup}" \
  --db "$db" \
  --rp autogen \
  --default
echo "DBRP mapping created: $db/autogen (default) -> bucket $db"
