"""Maintenance windows (decision 0043): a store is offered a rollout only inside its
daily window, in its own time zone with daylight saving time, across midnight; a store
without one at once; the deadline counts from the offer. The cloud's ``ManualClock``
moves the instants; the windows are set through the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cloud.db.models_rollouts import StoreMaintenance
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from cloud.rollouts.windows import Window, WindowError
from protocols import topics
from protocols.clock import ManualClock
from tests.cloud.conftest import ADMIN, MANAGER, MANAGER_S1, TECH, api_client, auth, make_settings
from tests.cloud.rollouts.test_targeting import CAB8, seed


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(("zone", "span", "utc", "open_"), [
    # Berlin on a winter night: CET, UTC+1
    ("Europe/Berlin", "02:00-05:00", "2026-01-15T00:59", False),  # 01:59
    ("Europe/Berlin", "02:00-05:00", "2026-01-15T01:00", True),  # 02:00
    ("Europe/Berlin", "02:00-05:00", "2026-01-15T03:59", True),  # 04:59
    ("Europe/Berlin", "02:00-05:00", "2026-01-15T04:00", False),  # 05:00, end excluded
    # 2026-03-29: clocks jump 02:00 CET -> 03:00 CEST at 01:00 UTC
    ("Europe/Berlin", "02:00-05:00", "2026-03-29T00:59", False),  # 01:59 CET
    ("Europe/Berlin", "02:00-05:00", "2026-03-29T01:00", True),  # 03:00 CEST
    ("Europe/Berlin", "02:00-05:00", "2026-03-29T02:59", True),  # 04:59 CEST
    ("Europe/Berlin", "02:00-05:00", "2026-03-29T03:00", False),  # 05:00 CEST (CET: 04:00)
    # across midnight, New York, EST (UTC-5) in January
    ("America/New_York", "22:00-02:00", "2026-01-15T02:59", False),  # 21:59
    ("America/New_York", "22:00-02:00", "2026-01-15T03:00", True),  # 22:00
    ("America/New_York", "22:00-02:00", "2026-01-15T05:00", True),  # 00:00
    ("America/New_York", "22:00-02:00", "2026-01-15T06:59", True),  # 01:59
    ("America/New_York", "22:00-02:00", "2026-01-15T07:00", False),  # 02:00
    # ... and EDT (UTC-4) after 2026-03-08
    ("America/New_York", "22:00-02:00", "2026-03-30T02:00", True),  # 22:00 EDT
    ("America/New_York", "22:00-02:00", "2026-03-30T06:00", False),  # 02:00 EDT
])
def test_a_window_is_read_on_the_stores_clocks(zone: str, span: str, utc: str,
                                               open_: bool) -> None:
    assert Window.parse(zone, span).open_at(ms(utc)) is open_


@pytest.mark.parametrize(("zone", "span", "field"), [
    ("Mars/Olympus", "02:00-05:00", "timezone"), ("../etc/passwd", "02:00-05:00", "timezone"),
    ("Europe/Berlin", "2:00-5:00", "window"), ("Europe/Berlin", "02:00-24:00", "window"),
    ("Europe/Berlin", "03:00-03:00", "window"),
])
def test_a_bad_zone_or_window_is_refused(zone: str, span: str, field: str) -> None:
    with pytest.raises(WindowError) as err:
        Window.parse(zone, span)
    assert err.value.field == field


def states(rollout: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {t["store_id"]: (t["state"], t["detail"]) for t in rollout["targets"]}


async def test_stores_are_offered_inside_their_windows_across_midnight_and_dst(
    tmp_path: Any,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    seed(db_url)  # stores s1..s4
    clock = ManualClock(ms("2026-03-28T22:00"))  # Berlin 23:00 CET, New York 18:00 EDT
    publisher = MemoryPublisher()
    app = create_app(make_settings(db_url), publisher=publisher, clock=clock)
    offerer = app.state.rollouts.offerer

    async def at(utc: str) -> dict[str, Any]:
        clock.advance((ms(utc) - clock.now_ms()) / 1000)
        await offerer.tick()
        r = await c.get(f"/api/v1/rollouts/{rollout_id}", headers=auth(ADMIN))
        return dict(r.json())

    async with api_client(app) as c:
        r = await c.put("/api/v1/stores/s1/maintenance", headers=auth(ADMIN),
                        json={"timezone": "Europe/Berlin", "window": "02:00-05:00"})
        assert r.status_code == 200, r.text
        assert r.json()["note"] == "rollouts are offered 02:00-05:00 Europe/Berlin local time only"
        # a store manager sets its own store's window; a field tech may not
        r = await c.put("/api/v1/stores/s2/maintenance", headers=auth(MANAGER),
                        json={"timezone": "America/New_York", "window": "22:00-02:00"})
        assert r.status_code == 200, r.text
        for token, store in ((TECH, "s2"), (MANAGER_S1, "s2")):
            r = await c.put(f"/api/v1/stores/{store}/maintenance", headers=auth(token),
                            json={"timezone": "UTC", "window": "01:00-02:00"})
            assert r.status_code == 403, r.text
        r = await c.put("/api/v1/stores/s3/maintenance", headers=auth(ADMIN),
                        json={"timezone": "Europe/Berln", "window": "02:00-05:00"})
        assert r.status_code == 422 and "unknown time zone 'Europe/Berln'" in r.json()["detail"]
        assert (await c.put("/api/v1/stores/nope/maintenance", headers=auth(ADMIN), json={
            "timezone": "UTC", "window": "01:00-02:00"})).status_code == 404
        none = (await c.get("/api/v1/stores/s3/maintenance", headers=auth(TECH))).json()
        assert none["window"] is None and "offered at once" in none["note"]

        r = await c.post("/api/v1/rollouts", headers=auth(ADMIN), json={
            "sha256": CAB8, "device": "vend-1", "stores": ["s1", "s2", "s3"],
            "canary_size": 3, "deadline_s": 7 * 86400})
        assert r.status_code == 201, r.text
        rollout_id = r.json()["id"]
        # s3 has no window: offered at once; the others wait, saying why
        now = await at("2026-03-28T22:00")
        assert states(now) == {
            "s1": ("waiting", "outside its maintenance window 02:00-05:00 Europe/Berlin"),
            "s2": ("waiting", "outside its maintenance window 22:00-02:00 America/New_York"),
            "s3": ("offered", None)}
        assert [m.topic for m in publisher.messages] == [topics.cmd("s3", "agent")]
        # Berlin springs forward at 01:00 UTC: 01:59 CET is outside, then 03:00 CEST inside
        assert states(await at("2026-03-29T00:59"))["s1"][0] == "waiting"
        now = await at("2026-03-29T01:00")
        assert states(now)["s1"] == ("offered", None)
        s1 = next(t for t in now["targets"] if t["store_id"] == "s1")
        assert s1["deadline_ms"] == ms("2026-03-29T01:00") + 7 * 86400 * 1000  # from the offer
        # New York's 22:00-02:00 opens at 22:00 EDT (02:00 UTC), not at 22:00 EST
        assert states(await at("2026-03-30T01:59"))["s2"][0] == "waiting"
        assert states(await at("2026-03-30T02:00"))["s2"] == ("offered", None)
        assert [m.topic for m in publisher.messages] == [
            topics.cmd(s, "agent") for s in ("s3", "s1", "s2")]
        # a removed window: offered at once again
        r = await c.delete("/api/v1/stores/s1/maintenance", headers=auth(ADMIN))
        assert r.status_code == 200 and r.json()["window"] is None
        with app.state.cloud.reader() as session:
            assert session.get(StoreMaintenance, "s1") is None
