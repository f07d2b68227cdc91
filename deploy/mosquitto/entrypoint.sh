#!/bin/sh
# Creates the ingest service's broker account from RPM_MQTT_PASSWORD on first start,
# then runs Mosquitto. Device accounts are added with
#   docker compose exec mqtt mosquitto_passwd -b /mosquitto/data/passwd <serial> <password>
set -eu
: "${RPM_MQTT_PASSWORD:?set RPM_MQTT_PASSWORD}"
passwd=/mosquitto/data/passwd
if [ ! -f "$passwd" ] || ! grep -q '^rpm-ingest:' "$passwd"; then
    touch "$passwd"
    chmod 0700 "$passwd"
    mosquitto_passwd -b "$passwd" rpm-ingest "$RPM_MQTT_PASSWORD"
fi
chown -R mosquitto:mosquitto /mosquitto/data
exec mosquitto -c /mosquitto/config/mosquitto.conf
