"""The agent applies exactly the desired keys declared in protocols.shadow_keys, the
table the cloud's API checks device-level desired states against (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edge_agent.app import Agent
from edge_agent.cartscreen import SAMPLE_DATA
from edge_agent.config import AgentConfig
from edge_agent.errors import ConfigError
from edge_agent.shadow import AgentShadow, ShadowKey, check_log_level
from protocols.clock import ManualClock
from protocols.shadow_keys import AGENT_KEYS, DEVICE_KEYS, undeclared


def make_agent(tmp_path: Path, **modules: dict[str, object]) -> Agent:
    config = AgentConfig(store_id="s-keys", data_dir=tmp_path / "agent",
                         cloud_url="mqtt://127.0.0.1:1", local_bus="embedded", metrics_port=0,
                         modules=modules)
    return Agent(config, clock=ManualClock(), registry=CollectorRegistry())


def test_the_agent_applies_exactly_the_declared_agent_keys(tmp_path: Path) -> None:
    """The kernel's keys plus its modules' (``trigger_rules`` is the in-aisle module's)."""
    assert AGENT_KEYS == {"log_level", "telemetry_interval_s", "devices", "trigger_rules"}
    with_in_aisle = make_agent(tmp_path, in_aisle={"retail_data": str(SAMPLE_DATA)})
    assert with_in_aisle.shadow.supported == AGENT_KEYS
    assert make_agent(tmp_path).shadow.supported == AGENT_KEYS - {"trigger_rules"}


def test_an_undeclared_key_is_refused_when_the_shadow_is_built(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)

    def apply(_: object) -> None:
        return None

    with pytest.raises(ConfigError) as caught:
        AgentShadow(agent.kv, store_id="s-keys", clock=ManualClock(), metrics=agent.metrics,
                    keys={"esl_price_book": ShadowKey("esl_price_book", check_log_level, apply)})
    assert "esl_price_book" in str(caught.value)


def test_device_level_keys_are_the_ones_drivers_declare() -> None:
    """Drivers declare them with ``@desired`` (decision 0037; test_device_shadow.py
    checks the two tables agree); anything else is undeclared for a device."""
    assert DEVICE_KEYS == {"esl_price_book", "audio_schedule"}
    assert undeclared("esl-1", ["esl_price_book", "volume", "audio_schedule"]) == ["volume"]
    assert undeclared("agent", ["anything"]) == []  # the agent keeps unknown keys
