#!/bin/sh
# Runs Mosquitto for rpm. Broker accounts and topic access live in the dynamic security
# plugin's file, which the plugin itself keeps (rpm changes device identities through its
# $CONTROL API, RPM_MQTT_DYNSEC_URL). On the first start, with no such file yet, this
# makes it through that same API, on a broker of its own listening on localhost only:
#   rpm-admin   the plugin's admin (RPM_MQTT_DYNSEC_PASSWORD): what rpm connects as to
#               make, rotate and revoke devices' identities
#   rpm-ingest  the ingest service (RPM_MQTT_PASSWORD): reads every device's topics, in
#               a shared-subscription group or not, and the broker's version and uptime
# Devices get their own client and role from rpm when they are registered. The file is
# only made once: to change a password later, use mosquitto_ctrl as rpm-admin.
# MOSQUITTO_CONFIG and MOSQUITTO_DATA are for tests/integration/test_mosquitto_config.py.
set -eu
: "${RPM_MQTT_PASSWORD:?set RPM_MQTT_PASSWORD}"
: "${RPM_MQTT_DYNSEC_PASSWORD:?set RPM_MQTT_DYNSEC_PASSWORD}"
config=${MOSQUITTO_CONFIG:-/mosquitto/config/mosquitto.conf}
data=${MOSQUITTO_DATA:-/mosquitto/data}
# The same file and plugin as the configuration names.
dynsec=$(sed -n 's/^plugin_opt_config_file[[:space:]][[:space:]]*//p' "$config")
plugin=$(sed -n 's/^plugin[[:space:]][[:space:]]*//p' "$config")
port=${MOSQUITTO_BOOTSTRAP_PORT:-1880}

bootstrap() {
    new="$dynsec.new"
    rm -f "$new"
    mosquitto_ctrl dynsec init "$new" rpm-admin "$RPM_MQTT_DYNSEC_PASSWORD" >/dev/null
    conf="$data/bootstrap.conf"
    printf 'listener %s 127.0.0.1\nallow_anonymous false\nplugin %s\nplugin_opt_config_file %s\n' \
        "$port" "$plugin" "$new" >"$conf"
    if [ "$(id -u)" = 0 ]; then echo "user root" >>"$conf"; fi
    mosquitto -c "$conf" >/dev/null 2>&1 &
    broker=$!
    ctrl() { mosquitto_ctrl -h 127.0.0.1 -p "$port" -u rpm-admin -P "$RPM_MQTT_DYNSEC_PASSWORD" dynsec "$@" >/dev/null; }
    tries=0
    until ctrl getDefaultACLAccess 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ]; then echo "entrypoint: the bootstrap broker did not start" >&2; exit 1; fi
        sleep 0.1
    done
    ctrl createRole rpm-ingest
    for filter in 'rpm/v1/devices/+/readings' 'rpm/v1/devices/+/status' \
        '$share/+/rpm/v1/devices/+/readings' '$share/+/rpm/v1/devices/+/status'; do
        ctrl addRoleACL rpm-ingest subscribePattern "$filter" allow
    done
    # Read at each connection (a shared subscription is unsafe on some versions), and by
    # the container's health check.
    ctrl addRoleACL rpm-ingest subscribeLiteral '$SYS/broker/version' allow
    ctrl addRoleACL rpm-ingest subscribeLiteral '$SYS/broker/uptime' allow
    ctrl createClient rpm-ingest -p "$RPM_MQTT_PASSWORD"
    ctrl addClientRole rpm-ingest rpm-ingest
    kill "$broker"
    wait "$broker" || true
    rm -f "$conf"
    chmod 0600 "$new"
    # Only a complete file is the real one: a first start cut short starts over.
    mv "$new" "$dynsec"
}

if [ ! -f "$dynsec" ]; then
    bootstrap
fi
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown -R mosquitto:mosquitto "$data"
fi
exec mosquitto -c "$config"
