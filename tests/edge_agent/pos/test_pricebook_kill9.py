"""``kill -9`` of a process applying a price book into the box's SQLite store (decision
0047): after it, the store holds the old book or the new one, never a mix. ``kill -9``
of the agent while it holds a book for later: restarted with the cloud gone, it applies
that book at its time."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud.promotions.signing import SnapshotSigner, raw_public
from edge_agent.pos.pricestore import BaseMismatch, Header, PriceStore
from tests.cloud.conftest import ADMIN, DEVICE_S1, auth
from tests.edge_agent.helpers import agent_process
from tests.integration.test_retail_e2e import cloud_server, until
from tests.services import Mosquitto

REPO = Path(__file__).resolve().parents[3]
N = 50_000

# The child applies a book whose rows stall (a file appears, then it sleeps) half way:
# the parent kills it there, inside the apply's transaction.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from edge_agent.pos.pricestore import Header, PriceStore
    db, mark, kind, n = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    def rows():
        for i in range(n):
            if i == n // 2:
                mark.write_text("mid")
                time.sleep(60)
            yield (f"sku-{i:06d}", "", "", 2, True)
    store = PriceStore(db)
    header = Header(version=2, base_version=1 if kind == "delta" else None,
                    currency="EUR", effective_ms=2, published_ms=2,
                    body_sha256="b2")
    if kind == "delta":
        store.apply_delta(header, rows(), [], chunk=1000)
    else:
        store.apply_full(header, rows(), chunk=1000)
""")


def v1(path: Path) -> PriceStore:
    store = PriceStore(path)
    store.apply_full(Header(version=1, base_version=None, currency="EUR", effective_ms=1,
                            published_ms=1, body_sha256="b1"),
                     ((f"sku-{i:06d}", "", "", 1, True) for i in range(N)))
    return store


@pytest.mark.parametrize("kind", ["full", "delta"])
def test_kill9_mid_apply_leaves_the_old_book(tmp_path: Path, kind: str) -> None:
    store = v1(tmp_path / "book.db")
    mark = tmp_path / "mid"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "book.db"),
                             str(mark), kind, str(N)], cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while not mark.exists():
            assert proc.poll() is None, "the child died before the middle of the apply"
            assert time.monotonic() < deadline, "the child never reached the middle"
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no handler, no rollback in the process
    finally:
        proc.kill()
        proc.wait(10)
    after = PriceStore(tmp_path / "book.db")  # reopened as the restarted agent would
    state = after.state()
    assert state is not None and (state.version, state.items) == (1, N)
    assert {i.price for i in after.items().values()} == {1}  # not one row of v2

    # and the store still takes the next book, on the right base only
    header = Header(version=2, base_version=1, currency="EUR", effective_ms=2,
                    published_ms=2, body_sha256="b2")
    assert store.apply_delta(header, [("sku-000001", "", "", 7, True)], ["sku-000002"]) \
        == ["sku-000001", "sku-000002"]
    with pytest.raises(BaseMismatch):
        store.apply_delta(header, [("sku-000003", "", "", 7, True)], [])
    state = store.state()
    assert state is not None and (state.version, state.items) == (2, N - 1)


@pytest.mark.mosquitto
@pytest.mark.slow
async def test_kill9_while_a_book_is_held_it_applies_on_time_with_the_cloud_gone(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    """A real agent process holds a price book published for a few seconds ahead, is
    ``kill -9``ed, and restarts with the cloud (API and broker) gone: it restores the
    held book from disk and applies it at its effective time, not before."""
    cloud_broker, local_broker = mosquitto_factory(), mosquitto_factory()
    signer = SnapshotSigner.generate()
    data = tmp_path / "agent"
    book_db, held = data / "pos" / "pricebook.db", data / "pos" / "pricebook.held"
    log = tmp_path / "agent.log"

    def version() -> int | None:
        state = PriceStore(book_db).state() if book_db.exists() else None
        return None if state is None else state.version

    async with cloud_server(f"sqlite:///{tmp_path / 'cloud.db'}", cloud_broker, signer,
                            CollectorRegistry()) as api_url, \
            httpx.AsyncClient(base_url=api_url, headers=auth(ADMIN), timeout=10) as hq:
        r = await hq.post("/api/v1/price-books", json={"items": BOOK})
        assert r.status_code == 201, r.text
        v1 = r.json()["version"]
        conf = tmp_path / "agent.toml"
        key = base64.b64encode(raw_public(signer.public_key)).decode()
        conf.write_text(f'[agent]\nawait_cloud_ready = false\n\n[till]\n'
                        f'cloud_api = "{api_url}"\ncloud_api_token = "{DEVICE_S1}"\n'
                        f'trusted_keys = ["{key}"]\nrefresh_interval_s = 1.0\n')
        with agent_process(store_id="s1", conf=conf, cloud_url=cloud_broker.url,
                           local_url=local_broker.url, data_dir=data, log=log,
                           log_level="INFO") as first:
            await until(lambda: version() == v1, timeout=60, what="v1 applied")
            due = int(time.time() * 1000) + 15_000  # past the kill and the restart
            r = await hq.post("/api/v1/price-books", json={
                "changes": True, "items": [{"sku": "milk", "price": 149}],
                "effective_ms": due})
            assert r.status_code == 201, r.text
            v2 = r.json()["version"]
            await until(held.exists, timeout=30, what="v2 held on disk")
            first.send_signal(signal.SIGKILL)
            first.wait(5)
        assert version() == v1 and time.time() * 1000 < due
    cloud_broker.stop()  # the cloud's API and broker are gone

    with agent_process(store_id="s1", conf=conf, cloud_url=cloud_broker.url,
                       local_url=local_broker.url, data_dir=data, log=log,
                       log_level="INFO") as second:
        await until(lambda: b"held again from disk" in log.read_bytes(), timeout=30,
                    what="the held book restored")
        seen, now_ms = version(), time.time() * 1000
        assert seen == v1 or now_ms >= due, "applied before its time"
        await until(lambda: version() == v2, timeout=(due / 1000 - time.time()) + 30,
                    what="v2 applied at its time")
        assert time.time() * 1000 >= due  # not before its time
        # the held file goes once the book is applied: just after the store's commit
        # that version() reads (a loaded box may take a moment between the two)
        await until(lambda: not held.exists(), timeout=15,
                    what="the held file dropped once applied")
        assert second.poll() is None
    items = PriceStore(book_db).items()
    assert (items["milk"].price, items["bread"].price) == (149, 350)


BOOK = [{"sku": "milk", "name": "Milk 1l", "category": "dairy", "price": 199},
        {"sku": "bread", "category": "bakery", "price": 350}]
