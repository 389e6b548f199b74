"""One broker address for the agent, the cloud and the simulators (decision 0032)."""

from __future__ import annotations

from pathlib import Path

import aiomqtt
import pytest

from protocols.broker import BrokerAddress, BrokerAddressError


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://cloud.example", BrokerAddress("cloud.example", 1883)),
    ("mqtts://cloud.example", BrokerAddress("cloud.example", 8883, tls=True)),
    ("MQTTS://cloud.example:8884", BrokerAddress("cloud.example", 8884, tls=True)),
    ("tcp://10.0.0.2:1999", BrokerAddress("10.0.0.2", 1999)),
    ("mqtt://edge%40s-1:p%3Ass@cloud.example:8883",
     BrokerAddress("cloud.example", 8883, "edge@s-1", "p:ss")),
    ("mqtts://S001@[::1]:8883", BrokerAddress("::1", 8883, "S001", tls=True)),
])
def test_parse(url: str, expected: BrokerAddress) -> None:
    assert BrokerAddress.parse(url, setting="cloud_url") == expected


@pytest.mark.parametrize(("url", "detail"), [
    ("http://cloud.example", "is not an mqtt://"),
    ("cloud.example:1883", "is not an mqtt://"),
    ("mqtt://", "has no host"),
    ("mqtt://cloud.example:99999", "bad port"),
    ("mqtts://cloud.example:8883/sf", "has no path"),
])
def test_bad_urls_name_the_setting(url: str, detail: str) -> None:
    with pytest.raises(BrokerAddressError, match=detail) as caught:
        BrokerAddress.parse(url, setting="cloud_url")
    assert caught.value.setting == "cloud_url"


def test_a_password_never_shows_in_errors_urls_or_repr() -> None:
    with pytest.raises(BrokerAddressError) as caught:
        BrokerAddress.parse("http://S001:hunter2@cloud.example", setting="cloud_url")
    assert "hunter2" not in str(caught.value)
    addr = BrokerAddress.parse("mqtts://S001:hunter2@cloud.example", setting="cloud_url")
    assert addr.password == "hunter2"
    assert "hunter2" not in addr.url + repr(addr)
    assert addr.url == "mqtts://cloud.example:8883"


def test_tls_files_need_mqtts_and_come_as_certificate_and_key(tmp_path: Path) -> None:
    plain = BrokerAddress.parse("mqtt://cloud.example", setting="cloud_url")
    with pytest.raises(BrokerAddressError, match="need an mqtts://") as caught:
        plain.with_tls(ca_file=tmp_path / "ca.crt", prefix="cloud")
    assert caught.value.setting == "cloud_ca"
    tls = BrokerAddress.parse("mqtts://cloud.example", setting="cloud_url")
    with pytest.raises(BrokerAddressError, match="come together") as caught:
        tls.with_tls(cert_file=tmp_path / "s.crt", prefix="cloud")
    assert caught.value.setting == "cloud_key"
    with pytest.raises(BrokerAddressError, match="come together") as caught:
        tls.with_tls(key_file=tmp_path / "s.key", prefix="mqtt")
    assert caught.value.setting == "mqtt_cert"
    mtls = tls.with_tls(ca_file=tmp_path / "ca.crt", cert_file=str(tmp_path / "s.crt"),
                        key_file=tmp_path / "s.key", prefix="cloud")
    assert mtls.mutual_tls and mtls.cert_file == tmp_path / "s.crt"
    assert mtls.tls_files(prefix="cloud") == [("cloud_ca", tmp_path / "ca.crt"),
                                              ("cloud_cert", tmp_path / "s.crt"),
                                              ("cloud_key", tmp_path / "s.key")]


def test_client_options() -> None:
    plain = BrokerAddress.parse("mqtt://u:p@h:1", setting="x")
    assert plain.client_options() == {"hostname": "h", "port": 1, "username": "u",
                                      "password": "p", "tls_params": None}
    mtls = BrokerAddress.parse("mqtts://h", setting="x").with_tls(
        ca_file="/c/ca.crt", cert_file="/c/s.crt", key_file="/c/s.key", prefix="x")
    assert mtls.client_options()["tls_params"] == aiomqtt.TLSParameters(
        ca_certs="/c/ca.crt", certfile="/c/s.crt", keyfile="/c/s.key")
    # mqtts:// without a CA file: TLS against the system's trusted CAs.
    system = BrokerAddress.parse("mqtts://h", setting="x").client_options()["tls_params"]
    assert system == aiomqtt.TLSParameters()
    assert BrokerAddress("h", 1).with_credentials(username="S001", password=None) == \
        BrokerAddress("h", 1, "S001")
