"""The A/B layout and the launcher's settlement (decision 0041), on a real directory with
real ``pip install --target`` and the launcher's real command line: every stop between
two steps leaves ``current`` naming a complete release or nothing (the runtime's agent).
And the agent's side of a trial that cannot become healthy: a real agent asks for its
restart at the deadline, and the launcher's next settlement switches back. The whole
path under a process supervisor is ``test_selfupdate.py``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.selfupdate.launcher import agent_command
from edge_agent.selfupdate.releases import (
    ENV_RELEASE,
    ENV_ROOT,
    Launched,
    ReleaseError,
    Releases,
    Trial,
    release_name,
)
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until
from tests.edge_agent.wheels import build_wheel
from tests.services import Mosquitto

SHA = "ab" * 32
NOW_MS = 1_800_000_000_000


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"), "0.2.0")


def trial(to: str, *, from_: str | None = None, state: str = "trial",
          deadline_ms: int = NOW_MS + 60_000) -> Trial:
    return Trial(rollout_id="r-1", sha256=SHA, version="0.2.0", to=to, from_=from_,
                 deadline_ms=deadline_ms, state=state)  # type: ignore[arg-type]


def fake_release(releases: Releases, name: str) -> None:
    (releases.path(name) / "edge_agent").mkdir(parents=True)


def test_unpack_switch_and_the_launchers_command(tmp_path: Path, wheel: Path) -> None:
    releases = Releases(tmp_path)
    name = release_name("0.2.0", SHA)
    # the cache names files by sha256: pip is given the wheel under its own name
    cached = tmp_path / "cas-entry"
    cached.write_bytes(wheel.read_bytes())
    with pytest.raises(ReleaseError) as err:
        releases.unpack(cached, name, python=sys.executable, version="9.9.9")
    assert err.value.reason == "wrong_wheel"
    path = releases.unpack(cached, name, python=sys.executable, version="0.2.0")
    assert (path / "edge_agent" / "__init__.py").read_text().count('"0.2.0"') == 1
    assert [p.name for p in releases.releases.iterdir()] == [name]  # no .partial left
    releases.switch(name)
    assert (releases.current(), releases.previous()) == (name, None)

    cmd, env = agent_command(releases, ["run", "--config", "x.toml"],
                             environ={"PYTHONPATH": "/elsewhere"}, python=sys.executable)
    assert cmd == [sys.executable, "-P", "-m", "edge_agent", "run", "--config", "x.toml"]
    assert env["PYTHONPATH"] == f"{path.resolve()}:/elsewhere"
    assert Launched.from_environ(env) == Launched(tmp_path, name)
    # the release's own code runs: its version, not this checkout's
    out = subprocess.run([*cmd[:2], "-c", "import edge_agent; print(edge_agent.__version__)"],
                         env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "0.2.0"


def test_not_a_wheel_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ReleaseError) as err:
        Releases(tmp_path).unpack(junk, "x", python=sys.executable, version="1")
    assert err.value.reason == "not_a_wheel"


def test_a_release_that_does_not_stay_up_is_switched_back_after_its_starts(
    tmp_path: Path
) -> None:
    releases = Releases(tmp_path)
    fake_release(releases, "old")
    fake_release(releases, "new")
    releases.switch("old")
    releases.write_trial(trial("new", from_="old"))
    releases.switch("new")
    for start in (1, 2, 3):
        settled = releases.settle(now_ms=NOW_MS)
        assert settled is not None and (settled.state, settled.starts) == ("trial", start)
        assert releases.current() == "new"
    settled = releases.settle(now_ms=NOW_MS)
    assert settled is not None and settled.state == "rolled_back"
    assert settled.detail == "rolled back: new did not report healthy in 3 starts"
    assert (releases.current(), releases.previous()) == ("old", None)
    assert releases.settle(now_ms=NOW_MS) == settled  # settled once


def test_past_the_deadline_it_is_switched_back_to_the_runtimes_agent(tmp_path: Path) -> None:
    releases = Releases(tmp_path)
    fake_release(releases, "new")
    releases.write_trial(trial("new", deadline_ms=NOW_MS - 1))
    releases.switch("new")
    settled = releases.settle(now_ms=NOW_MS)
    assert settled is not None and settled.detail.endswith("by the deadline")
    assert releases.current() is None  # the runtime's own agent runs


def test_a_stop_between_any_two_steps_leaves_a_complete_release(tmp_path: Path) -> None:
    releases = Releases(tmp_path)
    fake_release(releases, "old")
    releases.switch("old")
    # stopped while unpacking (a .partial left): failed, old runs, the next install cleans
    releases.write_trial(trial("new", from_="old", state="unpacking"))
    (releases.releases / ".new.4242.partial").mkdir()
    settled = releases.settle(now_ms=NOW_MS)
    assert settled is not None and settled.state == "failed"
    assert settled.detail.startswith("interrupted: ")
    assert releases.current() == "old"
    assert releases.prune(keep={"new"}) == [".new.4242.partial"]
    # stopped after writing the trial, before the switch
    fake_release(releases, "new")
    releases.write_trial(trial("new", from_="old"))
    settled = releases.settle(now_ms=NOW_MS)
    assert settled is not None and settled.state == "failed" and releases.current() == "old"
    # stopped after the roll back was recorded, before its switch: redone at the next start
    releases.switch("new")
    releases.write_trial(trial("new", from_="old", state="rolled_back"))
    releases.settle(now_ms=NOW_MS)
    assert releases.current() == "old"


def test_an_unreadable_trial_is_set_aside_and_the_agent_starts(tmp_path: Path) -> None:
    releases = Releases(tmp_path)
    releases.trial_path.write_text("{half")
    assert releases.settle(now_ms=int(time.time() * 1000)) is None
    assert releases.trial_path.with_suffix(".bad").read_text() == "{half"


@pytest.mark.mosquitto
async def test_a_release_not_healthy_by_its_deadline_restarts_and_is_switched_back(
    tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    releases = Releases(tmp_path / "opt")
    fake_release(releases, "new")
    deadline_ms = int(time.time() * 1000) + 1500
    releases.write_trial(trial("new", deadline_ms=deadline_ms))
    releases.switch("new")
    monkeypatch.setenv(ENV_ROOT, str(releases.root))  # as the launcher hands it over
    monkeypatch.setenv(ENV_RELEASE, "new")
    # connected to the cloud's broker, but no cloud answers its birth: online, not healthy
    cfg = make_config(tmp_path, uplink=uplink_broker, local=local_broker,
                      await_cloud_ready=True)
    async with running_agent(cfg) as agent:
        assert agent.online() and not agent.healthy()
        await wait_until(lambda: agent.restart_reason is not None, within_s=10,
                         what="the restart request")
        await wait_until(lambda: not agent.ready.is_set(), what="the clean stop")
        assert metric(agent, "storefleet_agent_updates_total", outcome="trial_timeout") == 1
    assert int(time.time() * 1000) > deadline_ms
    settled = releases.settle(now_ms=int(time.time() * 1000))
    assert settled is not None and settled.state == "rolled_back"
    assert settled.detail == "rolled back: new did not report healthy by the deadline"
    assert releases.current() is None


def test_the_launcher_loads_the_standard_library_only() -> None:
    """It runs before every agent start and is never replaced by a self-update."""
    code = ("import sys, edge_agent.selfupdate.launcher; "
            "print(' '.join(sorted(m for m in sys.modules if '.' not in m)))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    ours = {m for m in out if m in {"edge_agent", "protocols"}}
    third_party = [m for m in out if m not in sys.stdlib_module_names and m not in ours
                   and not m.startswith("_")]
    assert third_party == [], third_party
