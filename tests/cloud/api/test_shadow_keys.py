"""A device-level desired key no driver declares is refused (problem+json naming it),
not stored and published for the agent to drop (issue 11)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols import topics
from tests.cloud.conftest import ADMIN, MANAGER, api_client, auth, make_settings

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def test_device_level_desired_keys_must_be_declared(db_url: str) -> None:
    pub = MemoryPublisher()
    app = create_app(make_settings(db_url), publisher=pub, registry=CollectorRegistry())
    async with api_client(app) as c:
        r = await c.put("/api/v1/stores/s1/shadow/esl-01/desired", headers=auth(ADMIN),
                        json={"state": {"volume_db": -6, "screen_text": "hi"}})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"].endswith("/undeclared_shadow_key")
        assert "screen_text, volume_db" in problem["detail"]
        assert "esl-01" in problem["detail"]
        # Nothing stored, nothing published.
        assert (await c.get("/api/v1/stores/s1/shadow/esl-01",
                            headers=auth(MANAGER))).status_code == 404
        assert pub.on(topics.shadow_desired("s1", "esl-01")) == []
        # The agent's shadow takes its keys (and keeps unknown ones) as before.
        r = await c.put("/api/v1/stores/s1/shadow/agent/desired", headers=auth(ADMIN),
                        json={"state": {"log_level": "DEBUG", "note": "kept"}})
        assert r.status_code == 200 and r.json()["desired_version"] == 1
