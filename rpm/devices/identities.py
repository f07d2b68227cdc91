"""A device's identity on the broker, as the commands of Mosquitto 2's dynamic security
plugin (its `$CONTROL/dynamic-security/v1` API): plain data, no I/O.

A device's broker client is named by its serial (its MQTT username) and pinned to the
client id of the same name; its role, `rpm-device-<serial>`, grants it publishing on its
own two topics and nothing else (the plugin's defaults deny every other publish and every
subscription). The pinned client id is what stops a device from taking over another
client's session, the ingest service's among them: with MQTT a connection under a client
id that is already connected replaces it.

Each change is a list of commands sent in one message; the plugin runs them in order,
each on its own (there is no transaction), and answers one response per command.
So each list is written to reach its end state from any state a broken earlier attempt
may have left: an error that already means the wanted state ("Role already exists"
before creating it, "Client not found" when deleting it) is `harmless`, every other error
is a failure. Measured on Mosquitto 2.0.11: deleting a client, or changing its password,
disconnects the sessions logged in as it at once (tests/integration/test_broker_identities.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rpm.ingest.pipeline import TOPIC_PREFIX

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ROLE_PREFIX = "rpm-device-"
# 192 bits from the operating system's CSPRNG, URL-safe: a device types or pastes it.
SECRET_BYTES = 24

_ROLE_EXISTS = "Role already exists"
_CLIENT_EXISTS = "Client already exists"
_NO_CLIENT = "Client not found"
_NO_ROLE = "Role not found"


class Identities(Protocol):
    """Where device identities live (`rpm.devices.broker_identities` on Mosquitto)."""

    async def create(self, serial: str) -> str:
        """A new device's identity; returns its secret, to be shown once."""
        ...

    async def rotate(self, serial: str) -> str:
        """A new secret for the device (its identity made if missing); the old one stops
        working, and its sessions are dropped, at once."""
        ...

    async def revoke(self, serial: str) -> None:
        """The device can no longer connect; its sessions are dropped at once."""
        ...


class IdentityRefused(Exception):
    """The plugin answered a command with an error: the message names the commands."""


@dataclass(frozen=True)
class Command:
    body: Mapping[str, object]
    # Errors that mean the wanted state was already there.
    harmless: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return str(self.body["command"])


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def role_name(serial: str) -> str:
    return ROLE_PREFIX + serial


def device_topics(serial: str) -> tuple[str, str]:
    return f"{TOPIC_PREFIX}{serial}/readings", f"{TOPIC_PREFIX}{serial}/status"


def _role(serial: str, *, harmless: Iterable[str] = ()) -> Command:
    acls = [
        {"acltype": "publishClientSend", "topic": topic, "allow": True}
        for topic in device_topics(serial)
    ]
    body = {"command": "createRole", "rolename": role_name(serial), "acls": acls}
    return Command(body, frozenset(harmless))


def _client(serial: str, password: str, *, harmless: Iterable[str] = ()) -> Command:
    body = {
        "command": "createClient",
        "username": serial,
        "password": password,
        "clientid": serial,
        "textname": f"rpm device {serial}",
        "roles": [{"rolename": role_name(serial)}],
    }
    return Command(body, frozenset(harmless))


def create(serial: str, password: str) -> list[Command]:
    """A new device's identity. A role left by a broken earlier attempt is replaced; a
    client of that name is not (it may be one rpm does not own), so it fails."""
    return [
        Command({"command": "deleteRole", "rolename": role_name(serial)}, frozenset({_NO_ROLE})),
        _role(serial),
        _client(serial, password),
    ]


def rotate(serial: str, password: str) -> list[Command]:
    """A new secret for a registered device (made first if it has no identity yet: one
    registered while rpm did not manage the broker); the old one's sessions are dropped."""
    return [
        _role(serial, harmless={_ROLE_EXISTS}),
        _client(serial, password, harmless={_CLIENT_EXISTS}),
        Command(
            {
                "command": "modifyClient",
                "username": serial,
                "password": password,
                "clientid": serial,
                "roles": [{"rolename": role_name(serial)}],
            }
        ),
    ]


def revoke(serial: str) -> list[Command]:
    """A deactivated device's identity gone, its sessions dropped; gone already is fine."""
    return [
        Command({"command": "deleteClient", "username": serial}, frozenset({_NO_CLIENT})),
        Command({"command": "deleteRole", "rolename": role_name(serial)}, frozenset({_NO_ROLE})),
    ]


def request(commands: Sequence[Command], correlation: str) -> dict[str, object]:
    """The message to publish: each command tagged `<correlation>:<index>`, which the
    plugin echoes in its response (every admin client gets every response)."""
    return {
        "commands": [
            {**command.body, "correlationData": f"{correlation}:{index}"}
            for index, command in enumerate(commands)
        ]
    }


def answers(response: Mapping[str, object], correlation: str) -> dict[int, str | None]:
    """This request's answers in a response message, by command index: None for done,
    else the plugin's error. Another request's answers are left out."""
    found: dict[int, str | None] = {}
    items = response.get("responses")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        tag = str(item.get("correlationData", ""))
        mine, _, index = tag.rpartition(":")
        if mine == correlation and index.isdigit():
            error = item.get("error")
            found[int(index)] = None if error is None else str(error)
    return found


def check(commands: Sequence[Command], found: Mapping[int, str | None]) -> None:
    """`IdentityRefused` unless every command was done (or failed harmlessly)."""
    failures = []
    for index, command in enumerate(commands):
        error = found.get(index, "no answer")
        if error is not None and error not in command.harmless:
            failures.append(f"{command.name}: {error}")
    if failures:
        raise IdentityRefused("; ".join(failures))
