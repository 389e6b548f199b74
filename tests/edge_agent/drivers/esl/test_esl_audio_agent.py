"""Through the real agent (AgentDriverContext, local-bus consumer, supervisor): the ESL
and audio drivers configured by ``[[agent.devices]]`` drive their simulators."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.drivers.audio import AudioDriver
from edge_agent.drivers.esl import EslDriver
from firmware_sim.audio import start_audio_unit_sim
from firmware_sim.esl import start_esl_ap_sim
from tests.edge_agent.drivers.audio.fixtures import TRACK_MS, asset, schedule_doc
from tests.edge_agent.helpers import make_config, running_agent, wait_until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

LABELS = [f"L{i:02d}" for i in range(10)]


async def test_agent_runs_esl_and_audio_drivers_against_simulators(
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
    async with running_agent(config) as agent:
        ap = await start_esl_ap_sim(local.url, ap_id="AP1", labels=LABELS,
                                    checkin_interval_s=0.2, miss_prob=0.2, tick_s=0.05)
        unit = await start_audio_unit_sim(local.url, unit_id="U1", tick_s=0.1,
                                          status_interval_s=0.2)
        try:
            await wait_until(lambda: agent.driver("AP1") is not None, what="esl driver")
            esl = agent.driver("AP1")
            audio = agent.driver("U1")
            assert isinstance(esl, EslDriver) and isinstance(audio, AudioDriver)
            # the way the cloud sends them: device commands through the supervisor
            result = await agent.drivers.command("AP1", "esl_price_book", {
                "version": 1, "items": {f"SKU{i}": {"price_minor": 100 * i}
                                        for i in range(10)}})
            assert result["jobs"] == 10
            await wait_until(lambda: esl.health().details["labels_acked"] == 10,
                             what="labels acked")
            assert {ap.labels[label].shown_price_minor for label in LABELS} == {
                100 * i for i in range(10)}
            for track in TRACK_MS:
                await audio.put_asset(asset(track))
            # store hours around the clock, so the test sees music whatever time it runs
            doc = schedule_doc(dayparts=[{"name": "all", "start": "00:00", "end": "24:00",
                                          "playlist": ["m1", "m2"]}])
            await agent.drivers.command("U1", "audio_schedule", {"schedule": doc})
            await wait_until(lambda: unit.seq >= 1 and bool(unit.current), what="unit plays")
            assert {seg.layer for seg in unit.current.values()} >= {"music"}
            await wait_until(lambda: audio.health().online, what="unit status seen")
            health = agent.drivers.health()
            assert health["AP1"]["online"] and health["U1"]["online"]
            assert health["AP1"]["labels_acked"] == 10
        finally:
            await ap.aclose()
            await unit.aclose()
