"""CloudSettings: environment variables, validation, refusal of placeholder secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cloud.settings import CloudSettings, Role, TokenGrant


def test_from_env_reads_storefleet_variables() -> None:
    settings = CloudSettings.from_env({
        "STOREFLEET_DATABASE_URL": "postgresql+psycopg://u@h/db",
        "STOREFLEET_MQTT_URL": "mqtts://broker.example:8884",
        "STOREFLEET_SHARE_GROUP": "none",
        "STOREFLEET_INGEST_CLIENT_ID": "ingest-7",
        "STOREFLEET_API_TOKENS": "tok-aaaaaaaaaaaa:hq-admin,tok-bbbbbbbbbbbb:field-tech",
        "STOREFLEET_KEEPALIVE_S": "15",
    })
    assert settings.database_url.startswith("postgresql")
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.tls) == (
        "broker.example", 8884, True)
    assert settings.share_group is None
    assert settings.ingest_client_id == "ingest-7"
    assert settings.api_tokens == {"tok-aaaaaaaaaaaa": TokenGrant(role=Role.HQ_ADMIN),
                                   "tok-bbbbbbbbbbbb": TokenGrant(role=Role.FIELD_TECH)}
    assert settings.keepalive_s == 15


def test_defaults_and_overrides() -> None:
    settings = CloudSettings.from_env({}, mqtt_url="mqtt://10.0.0.2", database_url=None)
    assert settings.database_url == "sqlite:///./storefleet.db"
    assert settings.share_group == "storefleet-ingest"
    assert (settings.mqtt.host, settings.mqtt.port) == ("10.0.0.2", 1883)


def test_json_tokens() -> None:
    raw = '{"a-very-long-token-1": "field-tech"}'
    assert CloudSettings.from_env({"STOREFLEET_API_TOKENS": raw}).api_tokens == {
        "a-very-long-token-1": TokenGrant(role=Role.FIELD_TECH)}


@pytest.mark.parametrize("env", [
    {"STOREFLEET_API_TOKENS": "changeme:hq-admin"},
    {"STOREFLEET_API_TOKENS": "Secret:hq-admin"},
    {"STOREFLEET_API_TOKENS": "a-very-long-token-1:root"},
    {"STOREFLEET_MQTT_URL": "http://broker"},
    {"STOREFLEET_SHARE_GROUP": "bad/group"},
    {"STOREFLEET_KEEPALIVE_S": "1"},
])
def test_invalid_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        CloudSettings.from_env(env)


def test_scoped_tokens_in_env_and_json() -> None:
    env = ("tok-aaaaaaaaaaaa:hq-admin, tok-bbbbbbbbbbbb:store-manager@s1|s:2,"
           "tok:cccccccccccc:device@s3,tok-dddddddddddd:field-tech@region=north|s9")
    tokens = CloudSettings.from_env({"STOREFLEET_API_TOKENS": env}).api_tokens
    assert tokens == {
        "tok-aaaaaaaaaaaa": TokenGrant(role=Role.HQ_ADMIN),
        "tok-bbbbbbbbbbbb": TokenGrant(role=Role.STORE_MANAGER, stores=("s1", "s:2")),
        "tok:cccccccccccc": TokenGrant(role=Role.DEVICE, stores=("s3",)),
        "tok-dddddddddddd": TokenGrant(role=Role.FIELD_TECH, stores=("s9",),
                                       regions=("north",)),
    }
    raw = ('{"a-very-long-token-1": {"role": "device", "stores": ["s1"]},'
           ' "a-very-long-token-2": "hq-admin"}')
    tokens = CloudSettings.from_env({"STOREFLEET_API_TOKENS": raw}).api_tokens
    assert tokens["a-very-long-token-1"] == TokenGrant(role=Role.DEVICE, stores=("s1",))
    assert tokens["a-very-long-token-2"].role is Role.HQ_ADMIN


def test_unscoped_store_tokens_are_refused_unless_explicitly_allowed() -> None:
    old = {"STOREFLEET_API_TOKENS": "a-very-long-token-1:store-manager,"
                                    "a-very-long-token-2:device@s1"}
    with pytest.raises(ValidationError, match="no store scope"):
        CloudSettings.from_env(old)
    with pytest.raises(ValidationError, match="no store scope"):
        CloudSettings.from_env({**old, "STOREFLEET_REQUIRE_TOKEN_SCOPE": "1"})
    settings = CloudSettings.from_env({**old, "STOREFLEET_REQUIRE_TOKEN_SCOPE": "0"})
    assert settings.unscoped_store_tokens() == ["a-ve..."]


@pytest.mark.parametrize("tokens", [
    "a-very-long-token-1:hq-admin@s1",          # chain-wide role takes no scope
    "a-very-long-token-1:store-manager@bad/id",  # not an id
])
def test_bad_scopes_are_refused(tokens: str) -> None:
    with pytest.raises(ValidationError):
        CloudSettings.from_env({"STOREFLEET_API_TOKENS": tokens})


def test_secrets_from_files(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("broker-pw\n")
    (tmp_path / "hash").write_text("k" * 32)
    (tmp_path / "tokens").write_text("tok-abcdefghijkl:hq-admin\n")
    settings = CloudSettings.from_env({
        "STOREFLEET_MQTT_PASSWORD_FILE": str(tmp_path / "pw"),
        "STOREFLEET_MEMBER_HASH_KEY_FILE": str(tmp_path / "hash"),
        "STOREFLEET_API_TOKENS_FILE": str(tmp_path / "tokens"),
    })
    assert settings.mqtt_password == "broker-pw"
    assert settings.member_hash_key is not None
    assert settings.member_hash_key.get_secret_value() == "k" * 32
    assert settings.api_tokens["tok-abcdefghijkl"].role == "hq-admin"
    with pytest.raises(ValueError, match="both set"):
        CloudSettings.from_env({"STOREFLEET_MQTT_PASSWORD": "x",
                                "STOREFLEET_MQTT_PASSWORD_FILE": str(tmp_path / "pw")})
    with pytest.raises(ValueError, match="cannot read"):
        CloudSettings.from_env({"STOREFLEET_MQTT_PASSWORD_FILE": str(tmp_path / "none")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        CloudSettings.from_env({"STOREFLEET_MEMBER_HASH_KEY_FILE": str(tmp_path / "empty")})
