"""Shared parts of the staff assistant's tests: tokens, the app's settings, stores that
exist, sales through the real ingest path, and members who join by an assistant's code."""

from __future__ import annotations

import json
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from cloud.db import make_engine
from cloud.db.engine import make_session_factory, writer
from cloud.ingest.batch import BatchProcessor
from cloud.main import ingest_hooks, make_retail
from cloud.settings import CloudSettings
from cloud.staff import StaffMetrics
from protocols import topics
from protocols.clock import ManualClock
from tests.cloud.api.test_store_members import born  # noqa: F401  (used by the staff tests)
from tests.cloud.conftest import ADMIN, auth, make_settings

DAY_MS = 86_400_000
NOW = 1_796_212_800_000  # 2026-12-02T12:00Z, a Wednesday
SECRET = "test-member-code-secret-0001"
HASH_KEY = "test-member-hash-key-0001"
ANN = "test-staff-ann-token-01"  # assistant ann at S001
BOB = "test-staff-bob-token-01"  # assistant bob at S001
CARL = "test-staff-carl-token-1"  # assistant carl at S002
GHOST = "test-staff-ghost-token1"  # a token for S001 whose assistant was never registered
MANAGER_S001 = "test-staff-manager-s001"
STAFF_TOKENS: dict[str, Any] = {
    ADMIN: "hq-admin",
    ANN: {"role": "store-assistant", "stores": ["S001"], "name": "ann"},
    BOB: {"role": "store-assistant", "stores": ["S001"], "name": "bob"},
    CARL: {"role": "store-assistant", "stores": ["S002"], "name": "carl"},
    GHOST: {"role": "store-assistant", "stores": ["S001"], "name": "ghost"},
    MANAGER_S001: {"role": "store-manager", "stores": ["S001"]},
}


def staff_settings(db_url: str) -> CloudSettings:
    base = make_settings(db_url, member_hash_key=HASH_KEY, member_code_secret=SECRET)
    return CloudSettings.model_validate({**dict(base), "api_tokens": STAFF_TOKENS,
                                         "require_token_scope": True})


class Sales:
    """Sale events through the ingest path (batch commit, then every post-commit hook
    the cloud registers, the staff index among them)."""

    def __init__(self, db_url: str, settings: CloudSettings) -> None:
        self.registry = CollectorRegistry()
        self.metrics = StaffMetrics(self.registry)
        self.engine = make_engine(db_url)
        hooks = ingest_hooks(self.registry, retail=make_retail(settings, self.registry),
                             staff=self.metrics)
        self.batch = BatchProcessor(make_session_factory(writer(self.engine)),
                                    clock=ManualClock(NOW), max_payload=65536, hooks=hooks)
        self.seq = 0

    def sell(self, store: str, event_id: str, *, paid: int, ts: int,
             member: str | None = None) -> None:
        self.seq += 1
        body = {"v": 1, "id": event_id, "kind": "sale", "store_id": store, "seq": self.seq,
                "ts": ts, "data": {"member_id": member, "channel": "pos",
                                   "totals": {"subtotal": paid, "total": paid, "paid": paid}}}
        self.batch.process([(topics.evt(store, "sale"), json.dumps(body).encode())])

    def close(self) -> None:
        self.engine.dispose()


async def register(c: httpx.AsyncClient, store: str, assistant: str, name: str,
                   token: str = ADMIN) -> httpx.Response:
    return await c.post(f"/api/v1/staff/stores/{store}/assistants", headers=auth(token),
                        json={"assistant_id": assistant, "display_name": name})


async def join_code(c: httpx.AsyncClient, token: str, store: str, **body: Any) -> str:
    r = await c.post(f"/api/v1/staff/stores/{store}/join-code", headers=auth(token),
                     json=body)
    assert r.status_code == 200, r.text
    assert r.json()["qr_svg"].startswith("<svg")
    return str(r.json()["code"])


async def join(c: httpx.AsyncClient, code: str, join_id: str, **extra: Any) -> str:
    r = await c.post("/api/v1/staff/join", headers=auth(ADMIN),
                     json={"code": code, "join_id": join_id, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["member_id"])
