"""A device's broker identity as dynamic security commands: what each change sends and
how its answers are read (rpm.devices.identities)."""

from __future__ import annotations

import pytest

from rpm.devices import identities
from rpm.devices.identities import IdentityRefused


def test_a_device_may_publish_to_its_own_two_topics_only() -> None:
    create_role = identities.create("BP-1", "pw")[1].body
    assert create_role["rolename"] == "rpm-device-BP-1"
    assert create_role["acls"] == [
        {"acltype": "publishClientSend", "topic": "rpm/v1/devices/BP-1/readings", "allow": True},
        {"acltype": "publishClientSend", "topic": "rpm/v1/devices/BP-1/status", "allow": True},
    ]


def test_its_client_is_its_serial_pinned_to_the_same_client_id() -> None:
    client = identities.create("BP-1", "pw")[2].body
    assert client["command"] == "createClient"
    assert (client["username"], client["clientid"], client["password"]) == ("BP-1", "BP-1", "pw")
    assert client["roles"] == [{"rolename": "rpm-device-BP-1"}]


def test_each_command_is_tagged_with_the_request_correlation() -> None:
    commands = identities.revoke("BP-1")
    sent = identities.request(commands, "abc")["commands"]
    assert isinstance(sent, list)
    assert [c["correlationData"] for c in sent] == ["abc:0", "abc:1"]
    assert [c["command"] for c in sent] == ["deleteClient", "deleteRole"]


def test_answers_keep_only_this_requests() -> None:
    response = {
        "responses": [
            {"command": "deleteClient", "error": "Client not found", "correlationData": "abc:0"},
            {"command": "deleteRole", "correlationData": "abc:1"},
            {"command": "createClient", "correlationData": "other:0"},
            {"command": "getClient"},
        ]
    }
    assert identities.answers(response, "abc") == {0: "Client not found", 1: None}


def test_gone_already_is_a_harmless_answer_to_a_revocation() -> None:
    commands = identities.revoke("BP-1")
    identities.check(commands, {0: "Client not found", 1: "Role not found"})


def test_a_client_of_that_name_fails_a_creation_but_not_a_rotation() -> None:
    with pytest.raises(IdentityRefused, match="createClient: Client already exists"):
        identities.check(
            identities.create("BP-1", "pw"), {0: None, 1: None, 2: "Client already exists"}
        )
    rotation = identities.rotate("BP-1", "pw")
    identities.check(rotation, {0: "Role already exists", 1: "Client already exists", 2: None})


def test_a_missing_answer_is_a_failure() -> None:
    with pytest.raises(IdentityRefused, match="deleteRole: no answer"):
        identities.check(identities.revoke("BP-1"), {0: None})


def test_secrets_are_long_and_new_each_time() -> None:
    secrets = {identities.new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(len(s) == 32 for s in secrets)
