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


# ---- several hosts: a clustered broker (decision 0062) ---------------------------------

CLUSTER = "mqtts://S001:pw@n1:8883,n2:8884,n3"


def test_parse_a_host_list() -> None:
    addr = BrokerAddress.parse(CLUSTER, setting="cloud_url")
    assert addr == BrokerAddress("n1", 8883, "S001", "pw", tls=True,
                                 more_hosts=(("n2", 8884), ("n3", 8883)))
    assert addr.hosts == (("n1", 8883), ("n2", 8884), ("n3", 8883))
    assert addr.url == "mqtts://n1:8883,n2:8884,n3:8883"  # each port given, no password
    assert BrokerAddress.parse(addr.url, setting="x").hosts == addr.hosts
    # Default ports by scheme, IPv6 in brackets, one host is the one-host address.
    assert BrokerAddress.parse("mqtt://a,[::1]:1999", setting="x").hosts == (
        ("a", 1883), ("::1", 1999))
    assert BrokerAddress.parse("mqtt://a,[::1]:1999", setting="x").url == \
        "mqtt://a:1883,[::1]:1999"
    assert BrokerAddress.parse("mqtt://a", setting="x").more_hosts == ()
    # A client that does not fail over gets the first host.
    assert addr.client_options()["hostname"] == "n1" and addr.client_options()["port"] == 8883


@pytest.mark.parametrize(("url", "detail"), [
    ("mqtt://n1,,n3", r"\(host 2, ''\) has an empty host"),
    ("mqtt://n1,n2,", r"\(host 3, ''\) has an empty host"),
    ("mqtt://n1:1883,n2:x", r"\(host 2, 'n2:x'\) has a bad port"),
    ("mqtt://n1,n2:99999", r"\(host 2, 'n2:99999'\) has a bad port"),
    ("mqtt://n1,:1883", r"\(host 2, ':1883'\) has no host"),
    ("mqtt://n1,n2:1883,n1:1883", "lists n1:1883 twice"),
    ("mqtt://n1,n2/sf", "has no path"),
    ("mqtt://S001:hunter2@n1,[::1", "Invalid IPv6 URL"),
])
def test_bad_host_lists_say_which_host(url: str, detail: str) -> None:
    with pytest.raises(BrokerAddressError, match=detail) as caught:
        BrokerAddress.parse(url, setting="cloud_url")
    assert caught.value.setting == "cloud_url"
    assert "hunter2" not in str(caught.value)


def test_each_host_keeps_credentials_and_tls_files(tmp_path: Path) -> None:
    addr = BrokerAddress.parse(CLUSTER, setting="cloud_url").with_tls(
        ca_file=tmp_path / "ca.crt", prefix="cloud")
    each = addr.each_host()
    assert [(a.host, a.port) for a in each] == list(addr.hosts)
    assert all(a.more_hosts == () and a.password == "pw" and a.ca_file == tmp_path / "ca.crt"
               for a in each)
    assert each[1].client_options()["hostname"] == "n2"


def test_rotation_goes_round_every_host_in_an_order_kept_per_client() -> None:
    addr = BrokerAddress.parse(CLUSTER, setting="cloud_url")
    rotation = addr.rotation(seed="S001")
    picks = [next(rotation).host for _ in range(7)]
    assert sorted(picks[:3]) == ["n1", "n2", "n3"]  # every host once per round
    assert picks[3:6] == picks[:3] and picks[6] == picks[0]  # then again, in that order
    assert rotation.current is not None and rotation.current.host == picks[6]
    # The same client id, the same order: in every run and every process.
    again = addr.rotation(seed="S001")
    assert [next(again).host for _ in range(3)] == picks[:3]
    # One host: always that host.
    one = BrokerAddress.parse("mqtt://u@a:1", setting="x").rotation(seed="S001")
    assert {next(one) for _ in range(3)} == {BrokerAddress("a", 1, "u")}


def test_rotation_spreads_clients_and_a_dead_nodes_clients() -> None:
    """3,000 stores: about a third start on each node, and those of a node that dies
    move to both survivors, not all to the node listed after it."""
    addr = BrokerAddress.parse(CLUSTER, setting="cloud_url")
    first: dict[str, int] = {"n1": 0, "n2": 0, "n3": 0}
    after_n1: dict[str, int] = {"n2": 0, "n3": 0}
    for i in range(3000):
        rotation = addr.rotation(seed=f"S{i:05d}")
        host = next(rotation).host
        first[host] += 1
        if host == "n1":
            after_n1[next(rotation).host] += 1
    assert all(800 < n < 1200 for n in first.values()), first  # 1,000 each, +-20 %
    assert all(n > 0.35 * first["n1"] for n in after_n1.values()), after_n1
    # Without a seed, a fresh draw per rotation.
    unseeded = {next(addr.rotation()).host for _ in range(60)}
    assert unseeded == {"n1", "n2", "n3"}
