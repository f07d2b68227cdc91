"""docker-compose.yml cannot run here (no Docker engine): check what can be checked."""

from __future__ import annotations

import re
import shlex
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from rpm.cli import cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
CERTS = "./deploy/certs"


def test_compose_parses_and_names_the_four_services() -> None:
    assert set(COMPOSE["services"]) == {"db", "mqtt", "rpm", "proxy"}
    assert COMPOSE["services"]["db"]["image"].startswith("timescale/timescaledb:")
    assert COMPOSE["services"]["mqtt"]["image"].startswith("eclipse-mosquitto:2")


@pytest.mark.parametrize("service", ["db", "mqtt", "rpm", "proxy"])
def test_every_service_has_a_health_check_and_restarts(service: str) -> None:
    definition = COMPOSE["services"][service]
    assert definition["healthcheck"]["test"]
    assert definition["restart"] == "unless-stopped"


def test_every_mounted_file_exists() -> None:
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(CERTS):
                # The clinic's own, never in git: what `rpm tls make-certs` writes there.
                assert source.removeprefix(CERTS) in ("", "/ca.crt"), source
            elif source.startswith("."):
                assert (ROOT / source).is_file(), f"{name} mounts missing {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"


def test_the_entrypoint_runs_the_mounted_config() -> None:
    mqtt = COMPOSE["services"]["mqtt"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in mqtt["volumes"]}
    entrypoint = mqtt["entrypoint"][-1]
    assert entrypoint in mounts
    script = (ROOT / mounts[entrypoint]).read_text()
    assert 'exec mosquitto -c "$config"' in script
    config = re.search(r"config=\$\{MOSQUITTO_CONFIG:-(\S+)\}", script)
    assert config is not None
    assert config[1] in mounts


def test_mosquitto_config_is_what_the_service_relies_on() -> None:
    conf = dict(
        line.split(None, 1)
        for line in (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["persistence"] == "true"
    assert int(conf["autosave_interval"]) <= 60
    assert conf["allow_anonymous"] == "false"
    assert int(conf["max_inflight_messages"]) >= 1000
    # Accounts and topic access: the dynamic security plugin's, its file in the data volume.
    assert conf["plugin"].endswith("/mosquitto_dynamic_security.so")
    assert conf["plugin_opt_config_file"].startswith("/mosquitto/data/")
    assert "password_file" not in conf
    assert "acl_file" not in conf


def test_the_rpm_service_is_built_here_and_runs_a_real_command() -> None:
    rpm = COMPOSE["services"]["rpm"]
    assert (ROOT / rpm["build"] / "Dockerfile").is_file()
    program, command, *_ = rpm["command"]
    assert program == "rpm"
    assert command in get_command(cli).commands  # type: ignore[attr-defined]
    assert {"db", "mqtt"} == set(rpm["depends_on"])


def test_every_file_the_dockerfile_copies_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _destination = shlex.split(line)[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_rpm_is_reached_through_the_proxy_only_and_believes_it_alone() -> None:
    services = COMPOSE["services"]
    assert "ports" not in services["rpm"]
    proxy_address = services["proxy"]["networks"]["default"]["ipv4_address"]
    assert services["rpm"]["environment"]["RPM_HTTP_TRUSTED_PROXIES"] == proxy_address
    subnet = COMPOSE["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ip_address(proxy_address) in ip_network(subnet)
    assert "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in services["proxy"]["volumes"]
    assert "reverse_proxy {$RPM_UPSTREAM:rpm:8000}" in (ROOT / "deploy/caddy/Caddyfile").read_text()


def test_devices_and_rpm_reach_the_broker_over_tls_only() -> None:
    mqtt, rpm = COMPOSE["services"]["mqtt"], COMPOSE["services"]["rpm"]
    assert mqtt["ports"] == ["8883:8883"]
    assert "./deploy/mosquitto/tls.conf:/mosquitto/config/conf.d/tls.conf:ro" in mqtt["volumes"]
    assert f"{CERTS}:/mosquitto/certs:ro" in mqtt["volumes"]
    config = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert "include_dir /mosquitto/config/conf.d\n" in config
    listener = (ROOT / "deploy/mosquitto/tls.conf").read_text()
    assert "listener 8883\n" in listener
    assert "certfile /mosquitto/certs/server.crt\n" in listener
    environment = rpm["environment"]
    assert environment["RPM_MQTT_URL"].startswith("mqtts://rpm-ingest:")
    assert environment["RPM_MQTT_URL"].endswith("@mqtt:8883")
    assert environment["RPM_MQTT_DYNSEC_URL"].startswith("mqtts://")
    assert f"{CERTS}/ca.crt:{environment['RPM_MQTT_CA_FILE']}:ro" in rpm["volumes"]
    assert (ROOT / ".gitignore").read_text().count("deploy/certs/") == 1
