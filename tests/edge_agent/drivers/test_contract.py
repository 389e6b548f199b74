"""The driver contract (decision 0033): options validated before a driver starts (a bad
one refuses that device only, naming the field), stop is cancel and await (a
reconfigured serial device's old driver has closed its port before the new one opens
it), commands dispatched by declared argument models, drivers found by capability,
and the audio cache under the agent's data folder by default."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import edge_agent.drivers
from edge_agent.drivers.base import (
    DRIVERS,
    AnyOptions,
    BadOption,
    CommandRejected,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverOptions,
    register,
)
from edge_agent.drivers.capabilities import BUSY, LABEL_SINK, SCREEN_SINK, capabilities_of
from edge_agent.drivers.links import SerialLink, SerialOptions
from edge_agent.drivers.supervisor import DriverSupervisor
from edge_agent.drivers.testing import FakeContext
from firmware_sim.vending import VendingCabinetSim, start_vending_sim
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until
from tests.services import Mosquitto

DOORS = {"1": {"item": 11, "price": 300, "sku": "WATER-500"}}


@contextlib.asynccontextmanager
async def cabinet() -> AsyncIterator[VendingCabinetSim]:
    """The vending cabinet simulator on a real pty."""
    sim, task = await start_vending_sim()
    try:
        yield sim
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sim.port.close()


def vending(device_id: str, port: str, **options: Any) -> dict[str, Any]:
    return {"id": device_id, "family": "vending", "model": "sim-lockboard",
            "options": {"port": port, "poll_interval_s": 0.01, "reply_timeout_s": 0.2,
                        "doors": DOORS, **options}}


# ---- options: a bad option refuses that device only -----------------------------------------

@pytest.mark.mosquitto
async def test_a_bad_option_refuses_that_device_and_the_store_runs_on(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    async with cabinet() as good, cabinet() as other:
        devices = [vending("vend-ok", good.port.path),
                   vending("vend-bad", other.port.path, baudrate="fast")]
        cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker, devices=devices,
                          health_interval_s=0.1)
        async with running_agent(cfg) as agent:
            await wait_until(lambda: agent.drivers.health().get("vend-ok", {}).get("online"),
                             what="the good cabinet online")
            bad = agent.drivers.health()["vend-bad"]
            assert bad["state"] == "refused" and bad["online"] is False
            assert bad["refused_reason"] == "bad_option" and bad["refused_field"] == "baudrate"
            assert "vend-bad" in bad["last_error"] and "baudrate" in bad["last_error"]
            assert metric(agent, "storefleet_driver_refused_total", family="vending",
                          reason="bad_option") == 1
            assert agent.drivers.driver("vend-bad") is None
            # The good one works: a customer's vend goes through its driver.
            good.customer(door=1, funds=500)
            await wait_until(lambda: good.unlocks == [1], what="the good cabinet vends")
        # running_agent's exit awaited a clean stop: nothing was left raising.


def test_every_shipped_family_declares_its_options_and_refuses_unknown_ones() -> None:
    shipped = {name: DRIVERS[name] for name in edge_agent.drivers.LOADED_FAMILIES}
    assert shipped, "no family loaded"
    for family, cls in shipped.items():
        assert cls.Options is not AnyOptions and issubclass(cls.Options, DriverOptions), family
    with pytest.raises(BadOption) as refused:
        DRIVERS["vending"](DeviceConfig("V9", "vending", options={
            "port": "/dev/null", "buadrate": 9600}), FakeContext())
    assert refused.value.field == "buadrate" and refused.value.reason == "bad_option"


def test_families_are_the_folders_and_stale_entries_are_gone() -> None:
    assert set(edge_agent.drivers.FAMILY_PACKAGES) == set(edge_agent.drivers.LOADED_FAMILIES)
    assert {"pos", "drawer"}.isdisjoint(edge_agent.drivers.FAMILY_PACKAGES)
    assert set(edge_agent.drivers.LOADED_FAMILIES) <= set(DRIVERS)


# ---- stop is cancel and await -------------------------------------------------------------

class _SlowCloseOptions(SerialOptions):
    goodbye_s: float = 0.2


@register
class SlowCloseDriver(Driver):
    """A test family whose cleanup awaits before its port closes (a goodbye frame, a
    flush): its replacement must not open the port until then."""

    family = "test_slow_close"
    Options = _SlowCloseOptions
    options: _SlowCloseOptions

    def __init__(self, config: DeviceConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.opened = False

    async def run(self) -> None:
        link = await SerialLink(self.device_id, self.options.port).open()
        self.opened = True
        try:
            await asyncio.Event().wait()
        finally:
            try:
                await link.write(b"bye\r")
                await asyncio.sleep(self.options.goodbye_s)
            finally:
                await link.close()

    def health(self) -> DeviceHealth:
        return DeviceHealth(online=self.opened)


async def test_reconfiguring_a_serial_device_awaits_the_old_driver_before_opening() -> None:
    async with cabinet() as sim:
        ctx = FakeContext()
        sup = DriverSupervisor(ctx)
        try:
            def slow(goodbye_s: float) -> DeviceConfig:
                return DeviceConfig("V1", "test_slow_close",
                                    options={"port": sim.port.path, "goodbye_s": goodbye_s})

            assert sup.configure([slow(0.2)]) == []
            await wait_until(lambda: sup.health()["V1"]["online"], what="first driver open")
            # Reconfigured twice in a row, the second time to the real vending driver: each
            # replacement opens the port (exclusive) only after every earlier driver closed it.
            assert sup.configure([slow(0.1)]) == []
            assert sup.configure([DeviceConfig.from_dict(vending("V1", sim.port.path))]) == []
            await wait_until(lambda: sup.health()["V1"]["online"], what="vending driver online")
            h = sup.health()["V1"]
            assert h["state"] == "running" and h["restarts"] == 0 and h["last_error"] is None
            sim.customer(door=1, funds=500)
            (event,) = await ctx.wait_events(1)
            assert event.kind == "vend" and event.data["outcome"] == "success"
        finally:
            await sup.aclose()


# ---- commands carry argument models ----------------------------------------------------------

def _configs(tmp_path: Path) -> list[DeviceConfig]:
    """One device of each family with commands; none needs its device to answer."""
    return [DeviceConfig("V1", "vending", options={"port": "/dev/null"}),
               DeviceConfig("P1", "printer", options={"host": "127.0.0.1"}),
               DeviceConfig("E1", "esl"),
               DeviceConfig("C1", "cart"),
               DeviceConfig("A1", "audio", options={"cache_dir": str(tmp_path / "a")}),
               DeviceConfig("B1", "beacon", options={"backend": "replay",
                                                     "recording": "/dev/null"})]


def _drivers(tmp_path: Path, ctx: FakeContext) -> dict[str, Driver]:
    return {c.family: DRIVERS[c.family](c, ctx) for c in _configs(tmp_path)}


@pytest.mark.parametrize(("family", "name", "args", "field"), [
    ("vending", "unlock", {"door": 16}, "door"),
    ("vending", "unlock", {"door": "5"}, "door"),
    ("vending", "unlock", {}, "door"),
    ("printer", "print_text", {"lines": "not a list"}, "lines"),
    ("esl", "esl_price_book", {"version": 1, "items": {"A": {"price_minor": -5}}},
     "items.A.price_minor"),
    ("esl", "bind_labels", {"labels": {"L9": 5}}, "labels.L9"),
    ("cart", "screen", {"cart_id": "C7", "title": "x" * 81}, "title"),
    ("audio", "audio_asset", {"data_b64": 5}, "data_b64"),
    ("beacon", "inventory", {"verbose": True}, "verbose"),
])
async def test_bad_arguments_are_refused_naming_the_field_and_counted(
    tmp_path: Path, family: str, name: str, args: dict[str, Any], field: str
) -> None:
    ctx = FakeContext()
    sup = DriverSupervisor(ctx)
    [config] = [c for c in _configs(tmp_path) if c.family == family]
    assert sup.configure([config]) == []
    try:
        with pytest.raises(CommandRejected) as refused:
            await sup.command(config.device_id, name, args)
    finally:
        await sup.aclose()
    assert refused.value.field == field and refused.value.reason == "bad_argument"
    assert field.split(".")[0] in refused.value.detail
    assert ctx.registry.get_sample_value("storefleet_driver_commands_total", {
        "family": family, "result": "bad_argument"}) == 1


async def test_commands_are_declared_in_a_table(tmp_path: Path) -> None:
    drivers = _drivers(tmp_path, FakeContext())
    assert set(drivers["vending"].commands) == {"unlock", "status", "firmware_update"}
    assert set(drivers["printer"].commands) == {"open_drawer", "status", "print_text"}
    assert {"esl_price_book", "set_price_book", "bind_labels"} <= set(drivers["esl"].commands)
    assert set(drivers["cart"].commands) == {"list_carts", "screen"}
    with pytest.raises(CommandRejected) as unknown:
        await drivers["cart"].handle_command("launch", {})
    assert unknown.value.reason == "unknown_command"


# ---- capabilities -----------------------------------------------------------------------------

async def test_drivers_are_found_by_capability(tmp_path: Path) -> None:
    ctx = FakeContext()
    sup = DriverSupervisor(ctx)
    sup.configure([DeviceConfig("E1", "esl"), DeviceConfig("E2", "esl"),
                   DeviceConfig("C1", "cart"),
                   DeviceConfig("P1", "printer", options={"host": "127.0.0.1",
                                                          "tcp_port": 1})])
    try:
        assert [d.device_id for d in sup.find(LABEL_SINK)] == ["E1", "E2"]
        assert [d is sup.driver("C1") for d in sup.find(SCREEN_SINK)] == [True]
        assert capabilities_of(sup.driver("P1")) == ["receipt_printer"]
        assert capabilities_of(sup.driver("C1")) == ["screen_sink", "cart_fleet", "busy"]
        assert [d.device_id for d in sup.find(BUSY)] == ["E1", "E2", "C1"]
    finally:
        await sup.aclose()


# ---- the audio cache's documented default --------------------------------------------------

@pytest.mark.mosquitto
async def test_audio_cache_defaults_to_the_agent_data_dir(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker,
                      devices=[{"id": "U1", "family": "audio"}], health_interval_s=0.1)
    async with running_agent(cfg) as agent:
        await wait_until(lambda: agent.drivers.driver("U1") is not None, what="audio driver")
        health = agent.drivers.health()["U1"]
        assert health["state"] != "refused" and health["last_error"] is None
        driver: Any = agent.drivers.driver("U1")
        assert driver.cache.root == Path(cfg.data_dir) / "audio" / "U1"
        assert (Path(cfg.data_dir) / "audio" / "U1").is_dir()
