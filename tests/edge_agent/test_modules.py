"""Modules (issue 13, decision 0030): a module of another package is found through its
entry point and runs with its own settings, commands, shadow keys and supervised task,
without a line of the kernel changed; its bad settings name the field."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry

from edge_agent.app import Agent
from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from edge_agent.kernel.module import discover
from edge_agent.modules.shelf import Shelf
from edge_agent.modules.till import Till
from protocols import topics
from protocols.codec import decode, encode
from protocols.messages import Command, CommandResult
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until, watch
from tests.services import Mosquitto

PLUGIN = '''
import asyncio
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from edge_agent.commands import CommandSpec
from edge_agent.kernel.module import Module, ModuleSettings


class GreeterSettings(ModuleSettings):
    greeting: str = Field(default="hello", min_length=1)


class GreetArgs(BaseModel):
    name: str


class Greeter(Module):
    name = "greeter"
    Settings = GreeterSettings

    def __init__(self, kernel, settings):
        super().__init__(kernel, settings)
        self.ticks = 0
        self.crashed = False

    def commands(self) -> Mapping[str, CommandSpec[Any]]:
        async def greet(args: GreetArgs) -> dict[str, Any]:
            return {"text": f"{self.settings.greeting}, {args.name} from {self.kernel.store_id}"}

        return {"greet": CommandSpec(GreetArgs, greet)}

    async def start(self, tasks) -> None:
        tasks.start("greeter-ticks", self._tick)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self.ticks += 1
            if self.ticks == 3 and not self.crashed:
                self.crashed = True
                raise RuntimeError("greeter hiccup")
'''


@pytest.fixture
def greeter_installed(tmp_path: Path) -> Iterator[None]:
    """A package ``sf_greeter`` installed beside the agent: its code and a dist-info with
    the entry point, on sys.path, as pip would leave them."""
    site = tmp_path / "site"
    (site / "sf_greeter").mkdir(parents=True)
    (site / "sf_greeter" / "__init__.py").write_text(PLUGIN)
    info = site / "sf_greeter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sf-greeter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [storefleet.agent_modules]
        greeter = sf_greeter:Greeter
        """))
    sys.path.insert(0, str(site))
    try:
        yield
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("sf_greeter", None)


def test_the_built_in_modules_are_found() -> None:
    assert {"till", "shelf", "in_aisle", "vision"} <= set(discover())


def test_an_installed_module_is_found_by_its_entry_point(greeter_installed: None) -> None:
    assert "greeter" in discover()


def test_a_module_section_is_validated_naming_the_field(
    greeter_installed: None, tmp_path: Path
) -> None:
    cfg = make_config(tmp_path, uplink=Mosquitto(workdir=tmp_path), local=None,
                      modules={"greeter": {"greeting": ""}})
    with pytest.raises(ConfigError) as err:
        Agent(cfg, registry=CollectorRegistry())
    assert err.value.field == "greeter.greeting"
    unknown = make_config(tmp_path, uplink=Mosquitto(workdir=tmp_path), local=None,
                          modules={"greetr": {}})
    with pytest.raises(ConfigError, match="no such module"):
        Agent(unknown, registry=CollectorRegistry())


@pytest.mark.mosquitto
async def test_an_added_module_runs_supervised_and_answers_its_command(
    greeter_installed: None, tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto,
) -> None:
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker,
                      reconnect_min_s=0.01, reconnect_max_s=0.05,
                      modules={"greeter": {"greeting": "moin"}})
    async with watch(uplink_broker, cfg.store_id) as seen, running_agent(cfg) as agent:
        greeter = agent.module("greeter")
        assert greeter is not None
        await wait_until(lambda: greeter.ticks >= 6, what="the module's task, restarted")  # type: ignore[attr-defined]
        assert metric(agent, "storefleet_task_restarts_total", task="greeter-ticks") == 1
        command = Command(cmd_id="g-1", name="greet", args={"name": "Ana"}, expires_at=2**42,
                          ts=1)
        async with aiomqtt.Client(uplink_broker.host, uplink_broker.port) as cloud:
            await cloud.publish(topics.cmd(cfg.store_id), encode(command), qos=1)
            await wait_until(lambda: seen.on(topics.cmd_res(cfg.store_id)), what="result")
        result = decode(seen.on(topics.cmd_res(cfg.store_id))[0], CommandResult)
        assert result.status == "ok"
        assert result.result == {"text": f"moin, Ana from {cfg.store_id}"}
        assert agent.diagnostics()["tasks"]["greeter-ticks"]["state"] == "running"
    await asyncio.sleep(0)


def test_module_sections_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text(textwrap.dedent(f"""\
        [agent]
        store_id = "S001"
        data_dir = "{tmp_path / 'box'}"
        local_bus = "mqtt://127.0.0.1:1"
        metrics_port = 0

        [till]
        currency = "EUR"

        [till.store]
        name = "From the file"
        """))
    env = {"STOREFLEET_TILL__CURRENCY": "CHF", "STOREFLEET_TILL__STORE__TAX_ID": "CHE-1",
           "STOREFLEET_SHELF__SYNC_INTERVAL_S": "15", "STOREFLEET_CLOUD_URL": "ignored"}
    cfg = load_config(toml, environ=env)
    agent = Agent(cfg, registry=CollectorRegistry())
    till = agent.get(Till)
    assert till.settings.currency == "CHF"
    assert (till.settings.store.name, till.settings.store.tax_id) == ("From the file", "CHE-1")
    assert agent.get(Shelf).settings.sync_interval_s == 15.0
    with pytest.raises(ConfigError) as err:
        Agent(load_config(toml, environ={"STOREFLEET_TILL__CURRENCY": "swiss"}),
              registry=CollectorRegistry())
    assert err.value.field == "till.currency"


def test_the_shipped_example_configuration_builds_an_agent(tmp_path: Path) -> None:
    """deploy/edge.example.toml stays true: every key is one the kernel or a module takes.
    Its /etc/storefleet files are made here (the store layout: the demo store's)."""
    root = Path(__file__).resolve().parents[2]
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in ("ca.crt", "S001.crt", "S001.key"):
        (etc / name).write_text("placeholder")
    (etc / "layout.toml").write_text((root / "firmware_sim/layouts/demo_store.toml").read_text())
    example = tmp_path / "edge.toml"
    example.write_text((root / "deploy/edge.example.toml").read_text()
                       .replace("/etc/storefleet/", f"{etc}/"))
    agent = Agent(load_config(example, data_dir=tmp_path / "box", metrics_port=0),
                  registry=CollectorRegistry())
    assert set(agent.modules) == {"till", "shelf", "in_aisle", "selfupdate", "audio",
                                  "screens"}  # default on
    assert agent.get(Till).settings.store.time_zone == "Europe/Berlin"
    assert agent.config.cloud.tls
    assert [c.device_id for c in agent.device_configs()] == ["printer-1"]
