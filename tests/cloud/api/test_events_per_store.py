"""GET /events answers per store (decision 0026): two stores' events with the same id,
stored at the same instant, are two items, and paging one at a time finds both."""

from __future__ import annotations

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.messages import Event
from tests.cloud.api.test_resources import ingest
from tests.cloud.conftest import MANAGER, api_client, auth, make_settings


async def test_same_id_in_two_stores_pages_as_two_events(db_url: str) -> None:
    ingest(db_url, [(topics.evt(store, "sale"), encode(Event(
        id="x-1", kind="sale", store_id=store, seq=1, ts=1, data={"store": store})))
        for store in ("s2", "s1")], ManualClock())
    async with api_client(create_app(make_settings(db_url), publisher=MemoryPublisher())) as c:
        seen: list[tuple[str, str, str]] = []
        after: str | None = None
        for _ in range(5):  # more pages than events: a loop is caught, not endless
            params: dict[str, str | int] = {"limit": 1} | ({"after": after} if after else {})
            r = await c.get("/api/v1/events", params=params, headers=auth(MANAGER))
            assert r.status_code == 200, r.text
            page = r.json()
            seen += [(e["store_id"], e["id"], e["data"]["store"]) for e in page["items"]]
            if (after := page["next"]) is None:
                break
        assert seen == [("s1", "x-1", "s1"), ("s2", "x-1", "s2")]
        # A cursor from before the store was part of it cannot resume the new order.
        old = "MTIzOngtMQ"  # base64 of "123:x-1"
        r = await c.get("/api/v1/events", params={"after": old}, headers=auth(MANAGER))
        assert r.status_code == 422 and r.json()["type"].endswith("/bad_cursor")
