"""Agent releases (decision 0041): A/B install of a wheel, switch, restart, trial.

``install``: the cached wheel is unpacked beside the running release
(``releases/<version>-<sha8>``, ``edge_agent.selfupdate.releases``); ``trial.json``
says what is on trial; ``current`` is switched; then the kernel is asked for a restart
(a clean shutdown, the outbox drained and closed, exit code ``RESTART_EXIT_CODE``), and
the supervisor starts the launcher again, which runs the new release. The outcome
(``succeeded`` once the new agent is healthy, ``failed`` after a roll back) is reported
by the agent that runs then (``edge_agent.selfupdate.trial``), so ``install`` returns
no step: it waits to be cancelled by the shutdown it asked for.

Only an agent started by ``storefleet-edge-launcher`` can be updated: without the
launcher nothing would switch back a bad release, so the offer is refused.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.installers import Offer
from edge_agent.selfupdate.releases import Launched, ReleaseError, Releases, Trial, release_name
from edge_agent.selfupdate.trial import updates_counter
from protocols.messages import RolloutStep

if TYPE_CHECKING:
    from edge_agent.kernel.module import Kernel

logger = logging.getLogger(__name__)


class AgentInstaller:
    def __init__(self, kernel: Kernel, *, launched: Launched | None) -> None:
        self.kernel = kernel
        self.launched = launched
        self.counter = updates_counter(kernel.registry)

    def refuse(self, offer: Offer) -> str | None:
        if offer.device != "agent":
            return "an agent release is installed on the agent, not on a device"
        if self.launched is None:
            return ("this agent was not started by storefleet-edge-launcher: nothing "
                    "would roll a bad release back")
        trial = Releases(self.launched.root).read_trial()
        if trial is not None and trial.state == "trial" and trial.rollout_id != offer.rollout_id:
            return f"agent release {trial.to} is still on trial"
        return None

    def busy(self, offer: Offer) -> str | None:
        """A restart stops every driver and module for a few seconds: the agent is busy
        while any device is (``BusyReporter``: a vend session, a price book reaching the
        shelf) or any module is (a sale being recorded at the till or a cart; decision
        0043)."""
        return self.kernel.busy()

    async def install(self, offer: Offer, path: Path) -> tuple[RolloutStep, str]:
        assert self.launched is not None  # refused otherwise
        releases = Releases(self.launched.root)
        name = release_name(offer.version, offer.sha256)
        trial = Trial(rollout_id=offer.rollout_id, sha256=offer.sha256,
                      version=offer.version, to=name, from_=releases.current(),
                      deadline_ms=offer.deadline_ms)
        if trial.from_ == name:
            return "succeeded", f"version {offer.version} ({name}) is already running"
        try:
            # pip and fsync block for seconds: in a thread, the loop serves on.
            await asyncio.to_thread(releases.prune, keep={name})
            await asyncio.to_thread(releases.write_trial, trial)  # unpacking
            await asyncio.to_thread(releases.unpack, path, name, python=sys.executable,
                                    version=offer.version)
            trial.state = "trial"
            await asyncio.to_thread(releases.write_trial, trial)
            await asyncio.to_thread(releases.switch, name)
        except (ReleaseError, OSError) as err:
            self.counter.labels(outcome="unpack_failed").inc()
            logger.error("rollout %s: agent release %s not installed: %s", offer.rollout_id,
                         name, err)
            await asyncio.to_thread(releases.clear_trial)  # reported by the updates module
            return "failed", str(err)
        self.counter.labels(outcome="switched").inc()
        logger.warning("rollout %s: agent release %s installed (was %s); restarting into it",
                       offer.rollout_id, name, trial.from_ or "the runtime's agent")
        self.kernel.request_restart(f"agent release {name} installed")
        # The outcome is the next agent's to report: wait here for the shutdown's cancel.
        await asyncio.Event().wait()
        raise AssertionError("unreachable")
