"""``kill -9`` of a process applying a price book into the box's SQLite store (decision
0047): after it, the store holds the old book or the new one, never a mix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_agent.pos.pricestore import BaseMismatch, Header, PriceStore

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
