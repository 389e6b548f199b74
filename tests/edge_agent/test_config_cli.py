"""Settings, the CLI's refusals, the metrics endpoint, backoff."""

from __future__ import annotations

import random
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from edge_agent.cli import app
from edge_agent.config import AgentConfig, BrokerAddress, load_config
from edge_agent.errors import ConfigError
from edge_agent.metrics import AgentMetrics, MetricsServer
from protocols.backoff import Backoff


def test_defaults_and_urls(tmp_path: Path) -> None:
    cfg = AgentConfig(
        store_id="s-1",
        data_dir=tmp_path,
        cloud_url="mqtt://edge%40s-1:p%3Ass@cloud.example:8883",
        local_bus="mqtt://127.0.0.1:1999",
    )
    assert cfg.cloud == BrokerAddress("cloud.example", 8883, "edge@s-1", "p:ss")
    assert cfg.local == BrokerAddress("127.0.0.1", 1999)
    assert not cfg.embedded_local_bus
    assert cfg.outbox_path == tmp_path / "outbox.db"
    assert (cfg.metrics_port, cfg.keepalive_s, cfg.publish_window) == (9108, 10, 100)
    assert cfg.outbox_max_bytes == 256 * 1024 * 1024 and cfg.outbox_max_age_s == 7 * 24 * 3600
    embedded = AgentConfig(store_id="s-1", data_dir=tmp_path, cloud_password="secret")
    assert embedded.embedded_local_bus and embedded.local == BrokerAddress("127.0.0.1", 1884)
    assert embedded.cloud.password == "secret"


@pytest.mark.parametrize(
    ("field", "kw"),
    [
        ("store_id", {"store_id": "a/b"}),
        ("cloud_url", {"cloud_url": "http://x"}),
        ("local_bus", {"local_bus": "mqtt://"}),
        ("metrics_port", {"metrics_port": 70000}),
        ("publish_window", {"publish_window": 0}),
        ("outbox_synchronous", {"outbox_synchronous": "OFF"}),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, field: str, kw: dict[str, object]) -> None:
    values: dict[str, object] = {"store_id": "s-1", "data_dir": tmp_path, **kw}
    with pytest.raises(ConfigError) as err:
        AgentConfig(**values)  # type: ignore[arg-type]
    assert err.value.field == field


def test_toml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\nstore_id = "s-9"\ndata_dir = "/var/lib/sf"\nkeepalive_s = 30\n'
        "outbox_max_bytes = 1048576\n"
    )
    cfg = load_config(path, keepalive_s=5, metrics_port=None)
    assert (cfg.store_id, cfg.keepalive_s, cfg.outbox_max_bytes) == ("s-9", 5, 1048576)
    assert cfg.data_dir == Path("/var/lib/sf") and cfg.metrics_port == 9108
    path.write_text('store_id = "s-9"\ndata_dir = "x"\nfrobnicate = 1\n')
    with pytest.raises(ConfigError, match="frobnicate"):
        load_config(path)
    with pytest.raises(ConfigError, match="data_dir"):
        load_config(None, store_id="s-1")


def test_cli_refuses_bad_settings(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--store", "bad/id", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "store_id" in result.output
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0 and "--local-bus" in result.output


def test_metrics_endpoint_serves_its_own_registry() -> None:
    metrics = AgentMetrics(CollectorRegistry())
    metrics.bind_outbox(depth=lambda: 7, size=lambda: 700, oldest_age_s=lambda: 1.5,
                        headroom_s=lambda: 5400.0)
    metrics.bad_payloads.labels(source="local", reason="not_json").inc()
    server = MetricsServer(metrics.registry, host="127.0.0.1", port=0)
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        server.stop()
    assert "storefleet_outbox_depth 7.0" in text
    assert "storefleet_outbox_oldest_age_seconds 1.5" in text
    assert "storefleet_outbox_headroom_seconds 5400.0" in text
    assert 'storefleet_agent_bad_payloads_total{reason="not_json",source="local"} 1.0' in text
    for name in (
        "storefleet_uplink_connected",
        "storefleet_outbox_bytes",
        "storefleet_events_published_total",
        "storefleet_events_enqueued_total",
        "storefleet_telemetry_forwarded_total",
        "storefleet_local_devices_online",
    ):
        assert name in text


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(min_s=0.5, max_s=8, rng=random.Random(1))
    delays = [backoff.next() for _ in range(10)]
    assert all(0.5 <= d <= 8 for d in delays)
    assert max(delays[5:]) > 2  # the ceiling has grown
    backoff.reset()
    assert backoff.next() == 0.5  # first attempt: ceiling == min


def test_cloud_password_from_a_file_user_defaults_to_the_store(tmp_path: Path) -> None:
    secret = tmp_path / "S001.secret"
    secret.write_text("pw-from-file\n")
    cfg = load_config(store_id="S001", data_dir=tmp_path, cloud_url="mqtt://cloud:1883",
                      cloud_password_file=str(secret))
    assert cfg.cloud == BrokerAddress("cloud", 1883, "S001", "pw-from-file")
    secret.write_text("rotated")  # read at each connection: a rotated password is used
    assert cfg.cloud.password == "rotated"
    named = load_config(store_id="S001", data_dir=tmp_path, cloud_username="box-7",
                        cloud_password_file=str(secret))
    assert named.cloud.username == "box-7"
    with pytest.raises(ConfigError, match=r"cloud_password_file.*cannot read"):
        load_config(store_id="S001", data_dir=tmp_path, cloud_password_file=str(tmp_path / "no"))
    (tmp_path / "empty").write_text(" \n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(store_id="S001", data_dir=tmp_path,
                    cloud_password_file=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="not both"):
        load_config(store_id="S001", data_dir=tmp_path, cloud_password="x",
                    cloud_password_file=str(secret))


def test_cli_takes_the_cloud_password_file_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", "--store", "S001", "--data-dir", str(tmp_path)],
        env={"STOREFLEET_CLOUD_PASSWORD_FILE": str(tmp_path / "missing.secret")})
    assert result.exit_code == 2
    assert "cloud_password_file" in result.output and "missing.secret" in result.output
