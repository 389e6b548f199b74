"""The README's "Running it for real" steps, run as written (issue 12 item 8).

The fenced block after ``<!-- production-steps -->`` is taken from README.md and run by
bash, on real Mosquitto (with the shipped ``deploy/mosquitto/mosquitto.conf``, its
dynamic security plugin and ``mosquitto_ctrl``) and real PostgreSQL. Only the values of
step 0's ``export`` lines change (paths into this test's temporary folder, the test's
database, free broker ports, 127.0.0.1 as the broker's name), and the shipped broker
configuration gets this test's paths, certificate files and ports (and ``user root`` when
the test runs as root, since the temporary folder is root's alone). The store box
connects to the mTLS listener with the certificate the steps made. Everything else
runs as a reader would type it; the test waits where the README says "a minute later".

Then it counts: every event the simulated store produced (its ledger) is in the cloud's
database exactly once, both ingest workers serve metrics on their own ports, the store's
agent is cloud-ready, members can enrol (the member hash key is set), the API signs with
the key in the secrets folder, and ``fleet`` shows the store and its devices.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.services import Postgres, free_port, unavailable

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CLOUD_BROKER_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
STORE_BUS_CONF = REPO / "deploy" / "mosquitto" / "store-bus.conf"
MARKER = "<!-- production-steps -->"
# The ports the README's steps use as written; they must be free on this machine.
README_PORTS = (1884, 8000, 9108, 9109, 9110)
# ... so it never runs beside the demo's tests, which prefer them (scripts/test.sh runs
# two workers).
pytestmark = pytest.mark.xdist_group("fixed-ports")
API = "http://127.0.0.1:8000"


def readme_steps() -> str:
    text = README.read_text()
    assert text.count(MARKER) == 1, "README must mark its production steps exactly once"
    after = text.split(MARKER, 1)[1]
    match = re.match(r"\s*```bash\n(.*?)\n```", after, re.S)
    assert match, "the production steps must be a ```bash block right after the marker"
    return match.group(1)


def split_steps(block: str) -> tuple[str, str, str, str]:
    """(step 0, steps 1-5, step 6, step 7): the test waits where steps 6 and 7 say to."""
    site, rest = block.split("\n# 1.", 1)
    setup, rest = rest.split("\n# 6.", 1)
    devices_on, look = rest.split("\n# 7.", 1)
    return site, "# 1." + setup, "# 6." + devices_on, "# 7." + look


def with_site(site: str, values: dict[str, str]) -> str:
    """Step 0 with each ``export NAME=...`` line's value replaced (every name must be there)."""
    seen: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"step 0 sets {name}, which this test does not know"
        seen.add(name)
        return f"export {name}={values[name]}"

    out = re.sub(r"^export (\w+)=\S+.*$", replace, site, flags=re.M)
    assert seen == set(values), f"step 0 lacks {sorted(set(values) - seen)}"
    return out


def broker_conf(shipped: Path, dest: Path, substitutions: dict[str, str], *,
                state_dir: Path) -> Path:
    """A shipped Mosquitto configuration with this test's paths and port (each directive
    named in ``substitutions`` must be there exactly once)."""
    conf = shipped.read_text()
    for pattern, value in substitutions.items():
        conf, count = re.subn(pattern, value, conf, flags=re.M)
        assert count == 1, f"{shipped.name} no longer has one {pattern!r}"
    if not re.search(r"^pid_file ", conf, flags=re.M):
        conf += f"\npid_file {state_dir / 'mosquitto.pid'}\n"
    if os.geteuid() == 0:
        conf += "user root\n"
    dest.write_text(conf)
    return dest


def dynsec_plugin() -> Path:
    for candidate in ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
                      "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
                      "/usr/lib/mosquitto_dynamic_security.so"):
        if Path(candidate).exists():
            return Path(candidate)
    unavailable("mosquitto's dynamic security plugin is not installed")
    raise AssertionError("unreachable")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def marked_pids(marker: str) -> list[int]:
    """Every process started by the steps (they inherit ``SF_README_RUN``), daemons too."""
    pids = []
    needle = f"SF_README_RUN={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def signal_marked(marker: str, sig: int, match: str = "") -> int:
    count = 0
    for pid in marked_pids(marker):
        if match in cmdline(pid):
            try:
                os.kill(pid, sig)
                count += 1
            except ProcessLookupError:
                pass
    return count


@pytest.fixture
def run_marker() -> Iterator[str]:
    marker = uuid.uuid4().hex
    yield marker
    if signal_marked(marker, signal.SIGTERM):
        deadline = time.monotonic() + 10
        while marked_pids(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        signal_marked(marker, signal.SIGKILL)


def wait_for(check: Callable[[], object], *, within_s: float, what: str, log: Path) -> object:
    deadline = time.monotonic() + within_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, sa.exc.SQLAlchemyError, OSError) as err:
            last = err
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-6000:] if log.exists() else ""
    raise AssertionError(f"{what} not within {within_s} s (last: {last!r})\n--- log ---\n{tail}")


def test_readme_production_steps_run_as_written(
    tmp_path: Path, postgres_server: Postgres, run_marker: str
) -> None:
    for tool in ("mosquitto", "mosquitto_ctrl"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")
    busy = [port for port in README_PORTS if not port_free(port)]
    assert not busy, f"the README's steps need ports {busy} free on this machine"

    site, setup, devices_on, look = split_steps(readme_steps())
    broker_port, tls_port = free_port(), free_port()
    state = tmp_path / "broker"
    state.mkdir()
    dynsec = state / "dynamic-security.json"
    secrets_dir, box = tmp_path / "secrets", tmp_path / "box"
    pki_dir, broker_certs = secrets_dir / "pki", tmp_path / "mosquitto-certs"
    conf = broker_conf(CLOUD_BROKER_CONF, tmp_path / "mosquitto.conf", {
        r"^persistence_location .*$": f"persistence_location {state}/",
        r"^plugin_opt_config_file .*$": f"plugin_opt_config_file {dynsec}",
        r"^plugin .*$": f"plugin {dynsec_plugin()}",
        r"^listener 1883 127\.0\.0\.1$": f"listener {broker_port} 127.0.0.1",
        r"^listener 8883$": f"listener {tls_port} 127.0.0.1",
        r"^cafile /etc/mosquitto/certs/ca\.crt$": f"cafile {broker_certs / 'ca.crt'}",
        r"^certfile /etc/mosquitto/certs/server\.crt$":
            f"certfile {broker_certs / 'server.crt'}",
        r"^keyfile /etc/mosquitto/certs/server\.key$": f"keyfile {broker_certs / 'server.key'}",
        r"^crlfile /etc/mosquitto/certs/crl\.pem$": f"crlfile {broker_certs / 'crl.pem'}",
        r"^pid_file /run/mosquitto/mosquitto\.pid$": f"pid_file {state / 'mosquitto.pid'}",
    }, state_dir=state)
    bus_conf = broker_conf(STORE_BUS_CONF, tmp_path / "store-bus.conf", {
        r"^persistence_location .*$": f"persistence_location {box / 'bus'}/",
        r"^listener 1884$": "listener 1884 127.0.0.1",
    }, state_dir=tmp_path)
    db_url = postgres_server.create_database("sf_readme_steps")
    site = with_site(site, {
        "SF_SECRETS": str(secrets_dir),
        "SF_PKI": str(pki_dir),
        "SF_MOSQUITTO_CONF": str(conf),
        "SF_MOSQUITTO_CERTS": str(broker_certs),
        "SF_BROKER_PID": str(state / "mosquitto.pid"),
        "SF_STORE_BUS_CONF": str(bus_conf),
        "SF_DYNSEC": str(dynsec),
        "STOREFLEET_DATABASE_URL": db_url,
        "STOREFLEET_MQTT_URL": f"mqtt://127.0.0.1:{broker_port}",
        "SF_CLOUD_HOST": "127.0.0.1",
        "SF_CLOUD_BROKER": f"mqtts://127.0.0.1:{tls_port}",
        "SF_BOX_DATA": str(box),
    })
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFLEET_")}
    env.update(PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}:/usr/sbin",
               SF_README_RUN=run_marker, PYTHONUNBUFFERED="1")
    log = tmp_path / "steps.log"

    def run_steps(steps: str) -> str:
        """Step 0 then ``steps``; background jobs keep the output open, so it goes to a
        file, not a pipe. The output of these steps alone is returned."""
        start = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", site + "\n" + steps],
                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=120, check=False)
        with log.open("rb") as out:
            out.seek(start)
            output = out.read().decode(errors="replace")
        assert done.returncode == 0, f"{steps.splitlines()[0]} failed:\n{output}"
        return output

    run_steps(setup)
    for key_path in (pki_dir / "ca.key", pki_dir / "server.key", box / "identity" / "store.key"):
        assert key_path.stat().st_mode & 0o777 == 0o600, f"{key_path} is not 0600"
    # the box enrolled: no certificate was made by hand, and the store's identity is its own
    assert not (pki_dir / "stores" / "S001.key").exists()
    token = (secrets_dir / "hq-admin.token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}

    # "once S001 shows in `fleet stores`"
    def store_known() -> bool:
        rows = httpx.get(f"{API}/api/v1/stores", headers=headers, timeout=5).json()
        return any(row["store_id"] == "S001" for row in rows)

    wait_for(store_known, within_s=90, what="store S001 in the cloud", log=log)
    assert "S001" in run_steps(devices_on)

    # "a minute later": here, once the simulated store produced 40 events; it is then
    # stopped so that its ledger is final.
    ledger = box / "sim-ledger.txt"
    wait_for(lambda: ledger.exists() and len(ledger.read_text().split()) >= 40,
             within_s=60, what="40 events from the simulated store", log=log)
    assert signal_marked(run_marker, signal.SIGTERM, "sim store") == 1
    wait_for(lambda: not any("sim store" in cmdline(p) for p in marked_pids(run_marker)),
             within_s=30, what="the simulated store stopped", log=log)
    produced = ledger.read_text().split()
    assert len(produced) == len(set(produced)) >= 40

    # Every event the store produced is in the cloud's database, exactly once.
    engine = sa.create_engine(db_url)
    try:
        def stored_ids() -> list[str]:
            with engine.connect() as conn:
                return [r[0] for r in conn.execute(
                    sa.text("SELECT id FROM events WHERE store_id = 'S001'"))]

        def all_stored() -> bool:
            stored = stored_ids()
            return set(produced) <= set(stored) and len(stored) == len(set(stored))

        try:
            wait_for(all_stored, within_s=60, what="every produced event stored once", log=log)
        except AssertionError as err:
            missing = sorted(set(produced) - set(stored_ids()))
            raise AssertionError(f"{len(missing)} of {len(produced)} produced events are "
                                 f"not in the cloud: {missing[:3]}...") from err
    finally:
        engine.dispose()

    # Two ingest workers, each serving its metrics; the agent is cloud-ready on its own.
    for port in (9109, 9110):
        assert "storefleet_ingest_" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    agent_metrics = httpx.get("http://127.0.0.1:9108/metrics").text
    assert re.search(r"^storefleet_uplink_cloud_ready 1\.0$", agent_metrics, re.M)

    # The secrets from step 1 are in use: members enrol (member hash key), and snapshots
    # are signed with the key in the secrets folder, not a per-start one.
    member = httpx.post(f"{API}/api/v1/members", headers=headers,
                        json={"phone": "+4915112345678"}, timeout=10)
    assert member.status_code == 201, member.text
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((secrets_dir / "signing-key.pem").read_bytes(),
                                             password=None)
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
    keys = httpx.get(f"{API}/api/v1/promotions/keys", headers=headers, timeout=5).json()
    assert [k["public_key"] for k in keys] == [public]

    # Step 6 as written: the store's devices through the field techs' CLI.
    shown = run_steps(look)
    assert re.search(r"S001-\w+-\d\d", shown), shown

    # `fleet revoke` as the README says, on the broker as configured: the CRL is rewritten
    # and re-read on the API's SIGHUP (pid_file), the box is kicked and then refused in
    # the TLS handshake.
    revoked = subprocess.run([str(Path(sys.executable).parent / "fleet"), "revoke", "S001",
                              "--api", API, "--token", token], env=env, capture_output=True,
                             text=True, timeout=60, check=False)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr

    def refused_by_tls() -> bool:
        text = httpx.get("http://127.0.0.1:9108/metrics").text
        ready = re.search(r"^storefleet_uplink_cloud_ready 0\.0$", text, re.M)
        tls = re.search(r'^storefleet_uplink_connect_failures_total\{reason="tls"\} '
                        r"([0-9.e+]+)$", text, re.M)
        return bool(ready and tls and float(tls.group(1)) >= 1)

    wait_for(refused_by_tls, within_s=60, what="the revoked box refused by the broker", log=log)
