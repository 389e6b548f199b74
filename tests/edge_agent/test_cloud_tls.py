"""The agent's TLS settings to the cloud broker (decision 0032): ``mqtts://`` with a CA,
the store's certificate and key; a missing or unreadable file is refused at start with
the setting named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloud import pki
from edge_agent.config import load_config
from edge_agent.errors import ConfigError


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    pki.init_ca(d)
    pki.issue_store(d, "S001")
    return d


def test_mqtts_with_the_stores_certificate(tmp_path: Path, certs: Path) -> None:
    cfg = load_config(store_id="S001", data_dir=tmp_path, cloud_url="mqtts://cloud.example",
                      cloud_ca=str(certs / "ca.crt"), cloud_cert=certs / "stores/S001.crt",
                      cloud_key=certs / "stores/S001.key")
    assert (cfg.cloud.host, cfg.cloud.port, cfg.cloud.tls) == ("cloud.example", 8883, True)
    assert cfg.cloud.ca_file == certs / "ca.crt" and cfg.cloud.mutual_tls
    assert cfg.cloud.username is None and cfg.cloud.password is None  # the CN is the user


@pytest.mark.parametrize(("settings", "field", "detail"), [
    ({"cloud_cert": "missing.crt", "cloud_key": "S001.key"}, "cloud_cert", "cannot read"),
    ({"cloud_ca": "missing-ca.crt"}, "cloud_ca", "cannot read"),
    ({"cloud_cert": "S001.crt"}, "cloud_key", "come together"),
    ({"cloud_url": "mqtt://cloud.example", "cloud_ca": "ca.crt"}, "cloud_ca", "mqtts://"),
    ({"cloud_url": "https://cloud.example"}, "cloud_url", "mqtts://host:port"),
])
def test_refused_with_the_setting_named(tmp_path: Path, certs: Path,
                                        settings: dict[str, str], field: str,
                                        detail: str) -> None:
    names = {"S001.crt": certs / "stores/S001.crt", "S001.key": certs / "stores/S001.key",
             "ca.crt": certs / "ca.crt"}
    values = {"cloud_url": "mqtts://cloud.example",
              **{k: str(names.get(v, tmp_path / v)) if k != "cloud_url" else v
                 for k, v in settings.items()}}
    with pytest.raises(ConfigError, match=detail) as caught:
        load_config(store_id="S001", data_dir=tmp_path, **values)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_the_cli_takes_the_files_from_options_or_the_environment(tmp_path: Path,
                                                                  certs: Path) -> None:
    """``storefleet edge run --cloud-cert missing``: exit 2 and the setting named, before
    anything starts."""
    done = subprocess.run(
        [sys.executable, "-m", "storefleet", "edge", "run", "--store", "S001",
         "--data-dir", str(tmp_path / "edge"), "--cloud", "mqtts://127.0.0.1:1",
         "--cloud-cert", str(tmp_path / "missing.crt")],
        env={**os.environ, "STOREFLEET_CLOUD_KEY": str(certs / "stores/S001.key"),
             "STOREFLEET_CLOUD_CA": str(certs / "ca.crt")},
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "'cloud_cert'" in done.stderr and "missing.crt" in done.stderr
