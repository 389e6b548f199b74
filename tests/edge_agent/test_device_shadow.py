"""Device shadows through the real agent on real Mosquitto (decision 0037): a desired
state published on ``shadow/{device}/desired`` reaches the device's driver, which drives
its simulator; the reported shadow converges, names unsupported and rejected keys, and
follows a driver configured after its desired state arrived."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.drivers.audio import AudioDriver
from edge_agent.drivers.base import DRIVERS
from firmware_sim.audio import start_audio_unit_sim
from firmware_sim.esl import start_esl_ap_sim
from protocols import topics
from protocols.codec import decode
from protocols.messages import ShadowReported
from protocols.shadow_keys import DESIRED_KEYS, DESIRED_MAX_DEPTH, family_keys
from tests.edge_agent.drivers.audio.fixtures import TRACK_MS, asset, schedule_doc
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until, watch
from tests.edge_agent.test_shadow_commands import cloud_publish, desired
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

LABELS = [f"L{i:02d}" for i in range(6)]


def book(version: int, price: int) -> dict[str, Any]:
    return {"version": version, "currency": "EUR",
            "items": {f"SKU{i}": {"price_minor": price + i} for i in range(len(LABELS))}}


def test_every_declared_driver_key_is_in_the_shared_table_and_back() -> None:
    """What the API accepts (protocols.shadow_keys) is exactly what the drivers apply."""
    declared = {(k.name, k.family) for k in DESIRED_KEYS if k.target == "device"}
    in_drivers = {(key, family) for family, cls in DRIVERS.items() for key in cls.desired_keys}
    assert declared == in_drivers
    assert family_keys("esl") == {"esl_price_book"}
    assert family_keys("audio") == {"audio_schedule"}


async def test_device_desired_reaches_the_driver_and_the_report_converges(
    mosquitto_factory: object, tmp_path: Path
) -> None:
    uplink: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    local: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    devices = [
        {"id": "AP1", "family": "esl", "options": {
            "labels": {label: f"SKU{i}" for i, label in enumerate(LABELS)},
            "tick_s": 0.05, "retry_s": 1.0}},
        {"id": "U1", "family": "audio", "options": {"cache_dir": str(tmp_path / "audio"),
                                                    "tick_s": 0.1}},
    ]
    config = make_config(tmp_path, uplink=uplink, local=local, devices=devices)
    store = config.store_id

    def reports(device_id: str) -> list[ShadowReported]:
        return [decode(p, ShadowReported) for p in seen.on(topics.shadow_reported(store,
                                                                                  device_id))]

    def last(device_id: str) -> dict[str, Any]:
        return reports(device_id)[-1].state

    async with watch(uplink, store) as seen, running_agent(config) as agent:
        ap = await start_esl_ap_sim(local.url, ap_id="AP1", labels=LABELS,
                                    checkin_interval_s=0.2, tick_s=0.05)
        unit = await start_audio_unit_sim(local.url, unit_id="U1", tick_s=0.1,
                                          status_interval_s=0.2)
        try:
            # 1. The price book arrives retained, as the cloud sends it; a key the ESL
            # driver does not declare is reported unsupported, not dropped.
            await cloud_publish(uplink, topics.shadow_desired(store, "AP1"),
                                desired(1, esl_price_book=book(1, 100),
                                        audio_schedule=schedule_doc()), retain=True)
            await wait_until(lambda: len(reports("AP1")) >= 1, what="AP1 report v1")
            assert reports("AP1")[-1].version == 1
            assert last("AP1")["applied"] == {"esl_price_book": book(1, 100)}
            assert last("AP1")["unsupported"] == ["audio_schedule"]
            assert last("AP1")["delta"] == ["audio_schedule"]
            await wait_until(lambda: {ap.labels[x].shown_price_minor for x in LABELS}
                             == {100 + i for i in range(len(LABELS))}, what="labels show v1")
            assert metric(agent, "storefleet_agent_device_shadow_keys_total",
                          result="unsupported") == 1

            # 2. A new version converges; an old one is ignored.
            await cloud_publish(uplink, topics.shadow_desired(store, "AP1"),
                                desired(2, esl_price_book=book(2, 500)), retain=True)
            await wait_until(lambda: reports("AP1")[-1].version == 2, what="AP1 report v2")
            assert last("AP1") == {"applied": {"esl_price_book": book(2, 500)}, "delta": [],
                                   "unsupported": [], "rejected": {}, "error": None}
            await wait_until(lambda: {ap.labels[x].shown_price_minor for x in LABELS}
                             == {500 + i for i in range(len(LABELS))}, what="labels show v2")
            await cloud_publish(uplink, topics.shadow_desired(store, "AP1"),
                                desired(1, esl_price_book=book(1, 100)))
            # 3. A value its model refuses is rejected by field, the device unchanged.
            await cloud_publish(uplink, topics.shadow_desired(store, "AP1"), desired(
                3, esl_price_book={"version": 3, "items": {"SKU0": {"price_minor": "x"}}}),
                retain=True)
            await wait_until(lambda: reports("AP1")[-1].version == 3, what="AP1 report v3")
            assert all(r.version != 1 for r in reports("AP1")[1:])
            assert "items.SKU0.price_minor" in last("AP1")["rejected"]["esl_price_book"]
            assert last("AP1")["delta"] == ["esl_price_book"] and last("AP1")["applied"] == {}
            assert {ap.labels[x].shown_price_minor for x in LABELS} == {
                500 + i for i in range(len(LABELS))}

            # 4. The audio unit's schedule: the unit plays it, the report converges.
            audio = agent.driver("U1")
            assert isinstance(audio, AudioDriver)
            for track in TRACK_MS:
                await audio.put_asset(asset(track))
            doc = schedule_doc(dayparts=[{"name": "all", "start": "00:00", "end": "24:00",
                                          "playlist": ["m1", "m2"]}])
            await cloud_publish(uplink, topics.shadow_desired(store, "U1"),
                                desired(1, audio_schedule=doc), retain=True)
            await wait_until(lambda: unit.seq >= 1 and bool(unit.current), what="unit plays")
            await wait_until(lambda: len(reports("U1")) >= 1, what="U1 report")
            assert last("U1")["applied"] == {"audio_schedule": doc}
            assert last("U1")["delta"] == []

            # 5. A device's desired state before its driver exists: reported waiting, then
            # applied once the agent's own shadow configures the device.
            await cloud_publish(uplink, topics.shadow_desired(store, "AP2"),
                                desired(4, esl_price_book=book(4, 900)), retain=True)
            await wait_until(lambda: len(reports("AP2")) >= 1, what="AP2 report")
            assert last("AP2")["error"] == "no running driver for this device"
            assert last("AP2")["delta"] == ["esl_price_book"]
            await cloud_publish(uplink, topics.shadow_desired(store), desired(
                1, devices={"AP2": {"family": "esl", "options": {"labels": {"L99": "SKU0"}}}}),
                retain=True)
            await wait_until(lambda: last("AP2")["delta"] == [], what="AP2 converges")
            assert last("AP2")["applied"] == {"esl_price_book": book(4, 900)}
            assert reports("AP2")[-1].version == 4

            # 6. Too deep a document is refused whole and counted.
            deep: Any = 1
            for _ in range(DESIRED_MAX_DEPTH + 1):
                deep = {"x": deep}
            before = len(reports("U1"))
            await cloud_publish(uplink, topics.shadow_desired(store, "U1"),
                                desired(2, audio_schedule=deep))
            await wait_until(lambda: metric(agent, "storefleet_agent_bad_payloads_total",
                                            source="cloud", reason="shadow_too_deep") == 1,
                             what="too deep counted")
            assert len(reports("U1")) == before
        finally:
            await ap.aclose()
            await unit.aclose()
