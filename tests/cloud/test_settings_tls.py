"""The cloud services' TLS settings (decision 0032): ``STOREFLEET_MQTT_URL=mqtts://...``
with ``STOREFLEET_MQTT_CA`` / ``_CERT`` / ``_KEY``, refused at start-up with the setting
named when a file is missing or the address cannot use it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cloud import pki
from cloud.settings import CloudSettings


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    pki.init_ca(tmp_path)
    pki.issue_store(tmp_path, "storefleet-cloud")
    return tmp_path


def test_mqtts_with_a_client_certificate_from_the_environment(certs: Path) -> None:
    settings = CloudSettings.from_env({
        "STOREFLEET_MQTT_URL": "mqtts://broker.example",
        "STOREFLEET_MQTT_USERNAME": "storefleet-cloud",
        "STOREFLEET_MQTT_PASSWORD": "pw-1",
        "STOREFLEET_MQTT_CA": str(certs / "ca.crt"),
        "STOREFLEET_MQTT_CERT": str(certs / "stores/storefleet-cloud.crt"),
        "STOREFLEET_MQTT_KEY": str(certs / "stores/storefleet-cloud.key"),
    })
    address = settings.mqtt
    assert (address.host, address.port, address.tls) == ("broker.example", 8883, True)
    assert (address.username, address.password) == ("storefleet-cloud", "pw-1")
    assert address.cert_file == certs / "stores/storefleet-cloud.crt"
    options = address.client_options()
    assert options["tls_params"].ca_certs == str(certs / "ca.crt")


@pytest.mark.parametrize(("env", "detail"), [
    ({"STOREFLEET_MQTT_CA": "missing.crt"}, "mqtt_ca: cannot read"),
    ({"STOREFLEET_MQTT_CERT": "stores/storefleet-cloud.crt"}, "mqtt_key: a client"),
    ({"STOREFLEET_MQTT_URL": "mqtt://broker.example", "STOREFLEET_MQTT_CA": "ca.crt"},
     "mqtt_ca: TLS files need an mqtts://"),
])
def test_refused_with_the_setting_named(certs: Path, env: dict[str, str],
                                        detail: str) -> None:
    values = {"STOREFLEET_MQTT_URL": "mqtts://broker.example",
              **{k: v if k.endswith("_URL") else str(certs / v) for k, v in env.items()}}
    with pytest.raises(ValidationError, match=detail):
        CloudSettings.from_env(values)
