"""Broker users and what each may do, on Mosquitto's dynamic security plugin (decision 0027).

Why not the ``acl_file``: Mosquitto 2.0 never consults it at SUBSCRIBE time
(``src/security_default.c``: "FIXME - implement ACL subscription strings"), only when
it delivers. A store could subscribe to ``$share/storefleet-ingest/sf/v1/+/evt/+``, be
handed its share of every store's events, and have its read ACL discard them: lost.
The dynamic security plugin checks a subscription when it is made, against the filter
as sent (``$share/<group>/`` included), and refuses it in the SUBACK (0x80 in MQTT
3.1.1, 0x87 in MQTT 5); ``default_access`` below denies whatever no role allows.

Mosquitto 2.0's plugin has no ``%u`` patterns, so every store gets a role of its own,
``store-<id>``, built here from ``protocols.topics`` (the one place the namespace is
written down): it may publish only its upward channels and subscribe to and receive
only ``topics.store_downlink_filters``. Cloud services share two roles: ``ingest``
(subscribes, shared or not, under ``sf/v1/``; answers births) and ``hq`` (the API:
publishes downward). Every change is a batch of commands on
``$CONTROL/dynamic-security/v1``, sent as the plugin's admin user (created by
``mosquitto_ctrl dynsec init``; see deploy/mosquitto/README.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import aiomqtt

from cloud.errors import CloudError
from protocols import topics
from protocols.broker import BrokerAddress

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
INGEST_ROLE = "ingest"
HQ_ROLE = "hq"
CLOUD_ROLES = (INGEST_ROLE, HQ_ROLE)

Command = dict[str, Any]


class BrokerAdminError(CloudError):
    """The dynamic security plugin refused a command (``command``, ``error`` as it said)
    or did not answer."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"broker refused {command}: {error}")
        self.command = command
        self.error = error


def store_role(store_id: str) -> str:
    return f"store-{topics.check_id(store_id, 'store id')}"


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def store_acls(store_id: str) -> list[dict[str, Any]]:
    """The store's own upward channels to publish; its downward filters to subscribe to
    and receive, exactly as the agent subscribes (no ``$share``, no other store)."""
    root = topics.store_root(store_id)
    send = [topics.state(store_id), f"{root}/evt/#", f"{root}/tele/#",
            f"{root}/shadow/+/reported", topics.cmd_res(store_id)]
    down = topics.store_downlink_filters(store_id)
    return ([_acl("publishClientSend", t) for t in send]
            + [_acl("subscribePattern", f) for f in down]
            + [_acl("publishClientReceive", f) for f in down])


def cloud_role_commands() -> list[Command]:
    """The two roles of cloud services; ``setup_commands`` creates them once."""
    everything = f"{topics.PREFIX}/#"
    ingest = [_acl("subscribePattern", f"$share/+/{everything}"),  # any share group
              _acl("subscribePattern", everything),
              _acl("publishClientReceive", everything),
              _acl("publishClientSend", everything)]  # ready, and the cloud's answers
    hq = [_acl("publishClientSend", everything)]  # commands, desired state, content
    return [{"command": "createRole", "rolename": INGEST_ROLE, "acls": ingest},
            {"command": "createRole", "rolename": HQ_ROLE, "acls": hq}]


def setup_commands() -> list[Command]:
    """Deny by default (the admin role of ``mosquitto_ctrl dynsec init`` keeps its own
    rights), then the cloud roles."""
    default_access = [
        {"acltype": "publishClientSend", "allow": False},
        {"acltype": "publishClientReceive", "allow": False},
        {"acltype": "subscribe", "allow": False},
        {"acltype": "unsubscribe", "allow": True},  # dropping a subscription harms no one
    ]
    return [{"command": "setDefaultACLAccess", "acls": default_access}, *cloud_role_commands()]


def _client(username: str, password: str | None, roles: list[str]) -> Command:
    command: Command = {"command": "createClient", "username": username,
                        "roles": [{"rolename": r} for r in roles]}
    if password is not None:  # None: a certificate identity (use_identity_as_username)
        command["password"] = password
    return command


def store_user_commands(store_id: str, password: str | None) -> list[Command]:
    role = store_role(store_id)
    return [{"command": "createRole", "rolename": role, "acls": store_acls(store_id)},
            _client(store_id, password, [role])]


def cloud_user_commands(username: str, password: str | None,
                        roles: tuple[str, ...] = CLOUD_ROLES) -> list[Command]:
    return [_client(username, password, list(roles))]


async def send_commands(
    address: BrokerAddress,
    *,
    commands: list[Command],
    tolerate_existing: bool = False,
    wait_s: float = 10.0,  # the plugin answers at once; silence means it is not loaded
) -> None:
    """Send ``commands`` as one batch, as the plugin's admin (``address`` carries its
    user name and password, and TLS files for mqtts://), and wait for every answer; raise
    ``BrokerAdminError`` on the first refusal (an "already exists" is no refusal when
    ``tolerate_existing``: re-running the set-up is harmless)."""
    batch = [{**c, "correlationData": uuid.uuid4().hex} for c in commands]
    waiting = {c["correlationData"]: c["command"] for c in batch}
    try:
        async with aiomqtt.Client(**address.client_options(),
                                  identifier=f"storefleet-admin-{uuid.uuid4().hex[:8]}") as client:
            await client.subscribe(RESPONSE_TOPIC, qos=1)
            await client.publish(CONTROL_TOPIC, json.dumps({"commands": batch}), qos=1)
            async with asyncio.timeout(wait_s):
                async for message in client.messages:
                    for answer in _answers(message.payload):
                        command = waiting.pop(answer.get("correlationData"), None)
                        if command is None:
                            continue  # another admin's answer
                        error = answer.get("error")
                        if error and not (tolerate_existing and "already exists" in error):
                            raise BrokerAdminError(command, error)
                        logger.info("broker: %s %s", command, error or "done")
                    if not waiting:
                        return
    except TimeoutError as err:
        raise BrokerAdminError(", ".join(sorted(set(waiting.values()))),
                               f"no answer within {wait_s:g} s (is the dynamic security "
                               f"plugin loaded, and may {address.username!r} administer it?)"
                               ) from err
    except aiomqtt.MqttError as err:
        raise BrokerAdminError("connection", str(err)) from err


def _answers(payload: object) -> list[dict[str, Any]]:
    if not isinstance(payload, bytes | bytearray):
        raise BrokerAdminError("response", f"unexpected payload {payload!r}")
    try:
        answers = json.loads(payload).get("responses", [])
    except (ValueError, AttributeError) as err:
        raise BrokerAdminError("response", f"not the plugin's JSON: {payload[:80]!r}") from err
    return [a for a in answers if isinstance(a, dict)]
