"""The agent's side of a self-update trial (decision 0041), run by the ``selfupdate``
module in every agent the launcher starts.

- The new release, on trial: once it is healthy (``kernel.healthy()``: every module
  started, the uplink up and the cloud's answer to the birth in, no supervised task
  failed or restarting) for ``HEALTHY_FOR_S`` in one stretch, it commits the trial and
  reports ``succeeded``; if it is not healthy by the trial's deadline it asks the
  kernel for a restart, and the launcher, past the deadline, switches back.
- Any agent: an outcome not yet reported (committed; rolled back by the launcher;
  failed, the install stopped before the switch) is reported once: the
  ``rollout_status`` event goes into the outbox under the same uuid5 as the updates
  module's steps, then ``trial.json`` records it as reported. A stop between the two
  reports it again, under the same id: stored once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

from edge_agent.metrics import registry_scoped
from edge_agent.modules.updates import rollout_event_id
from edge_agent.selfupdate.releases import OUTCOMES, Launched, Releases, Trial
from protocols.messages import ROLLOUT_DETAIL_MAX, RolloutStep

if TYPE_CHECKING:
    from edge_agent.kernel.module import Kernel

logger = logging.getLogger(__name__)

AGENT = "agent"  # the rollout's device for agent releases
# Healthy this long in one stretch: an agent that fails right after connecting (a module
# crashing on its first message) does not commit.
HEALTHY_FOR_S = 3.0
_POLL_S = 0.2  # how often health is looked at while on trial


def updates_counter(registry: CollectorRegistry) -> Counter:
    return registry_scoped(registry, "agent_updates", lambda r: Counter(
        "storefleet_agent_updates", "agent self-updates on this box, by outcome (switched, "
        "unpack_failed, committed, rolled_back, failed, trial_timeout, report_failed, "
        "error: a bug)",
        ["outcome"], registry=r))


def outcome_step(trial: Trial) -> tuple[RolloutStep, str]:
    if trial.state == "committed":
        return "succeeded", f"version {trial.version} ({trial.to})"
    return "failed", trial.detail or trial.state


class TrialRunner:
    def __init__(self, kernel: Kernel, *, launched: Launched) -> None:
        self.kernel = kernel
        self.launched = launched
        self.releases = Releases(launched.root)
        self.counter = updates_counter(kernel.registry)

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: counted and logged; the outcome is tried at next start
            self.counter.labels(outcome="error").inc()
            logger.exception("agent self-update trial failed")

    async def _run(self) -> None:
        # trial.json is a few hundred bytes on a local disk: read on the loop is fine,
        # but the writes fsync, so they go to a thread.
        trial = self.releases.read_trial()
        if trial is None:
            return
        if trial.state == "trial" and trial.to == self.launched.release:
            if not await self._healthy_by(trial.deadline_ms):
                self.counter.labels(outcome="trial_timeout").inc()
                logger.error("agent release %s not healthy by its deadline: restarting so "
                             "the launcher switches back", trial.to)
                self.kernel.request_restart(f"release {trial.to} not healthy by its deadline")
                return
            trial.state, trial.detail = "committed", ""
            await asyncio.to_thread(self.releases.write_trial, trial)
            logger.info("agent release %s healthy: trial committed (start %d)", trial.to,
                        trial.starts)
        if trial.state in OUTCOMES and not trial.reported:
            await self._report(trial)

    async def _healthy_by(self, deadline_ms: int) -> bool:
        since: float | None = None
        clock = self.kernel.clock
        while clock.now_ms() < deadline_ms:
            if not self.kernel.healthy():
                since = None
            elif since is None:
                since = clock.monotonic()
            elif clock.monotonic() - since >= HEALTHY_FOR_S:
                return True
            await asyncio.sleep(_POLL_S)
        return False

    async def _report(self, trial: Trial) -> None:
        step, detail = outcome_step(trial)
        data = {"v": 1, "rollout_id": trial.rollout_id, "sha256": trial.sha256,
                "device": AGENT, "step": step, "detail": detail[:ROLLOUT_DETAIL_MAX]}
        try:
            await self.kernel.sink.emit_event(
                "rollout_status", device_id=AGENT, data=data,
                event_id=rollout_event_id(trial.rollout_id, AGENT, step))
        except Exception:  # the outbox refused it: counted, logged, tried at the next start
            self.counter.labels(outcome="report_failed").inc()
            logger.exception("rollout %s: the agent update's outcome was not stored",
                             trial.rollout_id)
            return
        self.counter.labels(outcome=trial.state).inc()
        log = logger.info if trial.state == "committed" else logger.error
        log("rollout %s: agent release %s %s, reported %s (%s)", trial.rollout_id, trial.to,
            trial.state, step, detail)
        trial.reported = True
        await asyncio.to_thread(self.releases.write_trial, trial)
