"""Rollouts (decision 0040): plan, offers, and what the boxes' reports change.

    rollout = create(session, RolloutPlan(...), artifact=row, now_ms=now)
    offers = await offerer.tick()          # publishes install_artifact to due stores
    hooks.register("rollouts", {"rollout_status"}, RolloutHook(metrics))

A rollout offers one artifact (``install_artifact`` agent command) to stores in waves:
the first ``canary_size`` stores, then groups of ``wave_size``. The stores (and for
firmware by model, the device in each) are resolved from stores, regions, groups and
models when it is created (``targeting.py``, decision 0043); a store with a maintenance
window is offered only inside it (``windows.py``), and a box whose device is busy
reports ``deferred`` (the target waits, its deadline still running). The next wave is
offered once ``success_pct`` of the current wave succeeded; ``failure_threshold`` failed
stores halt it; a store that has not reported success ``deadline_s`` after its offer has
failed. A failed (store, device, artifact) is recorded in ``rollout_failures`` and never
offered again (its target is ``skipped``).

State changes happen in two places, both idempotent: the ingest hook (a box's report)
and the offerer's tick (deadlines, and publishing the offers of the current wave). The
tick runs in the API process (a supervised loop, and right after create and resume).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models import Command
from cloud.db.models_artifacts import Artifact
from cloud.db.models_rollouts import Rollout, RolloutFailure, RolloutTarget, StoreMaintenance
from cloud.errors import PublishError
from cloud.publish import Publisher
from cloud.rollouts.errors import RolloutError
from cloud.rollouts.targeting import MAX_STORES, Selection, resolve
from cloud.rollouts.windows import Window
from protocols import topics
from protocols.clock import Clock
from protocols.codec import encode
from protocols.commands import SYSTEM_ROLE
from protocols.ids import Id, uuid7
from protocols.messages import Command as CommandMsg
from protocols.messages import CommandSender, Event, RolloutStatus

logger = logging.getLogger(__name__)

STATES = ("running", "paused", "halted", "aborted", "completed")
TERMINAL_TARGET = frozenset({"succeeded", "failed", "skipped"})
# Targets that are offered and not yet done: their deadline runs.
IN_FLIGHT = frozenset({"offered", "deferred", "installing"})
INSTALL_COMMAND = "install_artifact"
NAMES_MAX = 100  # regions, groups or models in one plan


class RolloutPlan(BaseModel):
    """What ``POST /api/v1/rollouts`` takes."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    device: Id | None = Field(default=None, description="'agent' (the default without "
                              "models) or the device the firmware is for in every store")
    stores: list[Id] = Field(default_factory=list, max_length=MAX_STORES)
    regions: list[Id] = Field(default_factory=list, max_length=NAMES_MAX)
    groups: list[Id] = Field(default_factory=list, max_length=NAMES_MAX)
    models: list[Id] = Field(default_factory=list, max_length=NAMES_MAX, description=
                             "firmware: the stores with a device of this model, each "
                             "target naming its device")
    canary_size: int = Field(default=1, ge=1)
    wave_size: int = Field(default=10, ge=1)
    success_pct: int = Field(default=100, ge=1, le=100)
    failure_threshold: int = Field(default=1, ge=1)
    deadline_s: int = Field(default=3600, ge=1, le=30 * 86400)

    @model_validator(mode="after")
    def _distinct(self) -> RolloutPlan:
        for name in ("stores", "regions", "groups", "models"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} are listed more than once")
        if not (self.stores or self.regions or self.groups or self.models):
            raise ValueError("select stores: give stores, regions, groups or models")
        return self

    def selection(self) -> Selection:
        return Selection(stores=list(self.stores), regions=list(self.regions),
                         groups=list(self.groups), models=list(self.models),
                         device=self.device)


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.offers = Counter("storefleet_rollout_offers", "install_artifact offers, by result",
                              ["result"], registry=registry)
        self.reports = Counter("storefleet_rollout_reports",
                               "rollout_status reports, by step (ignored: unknown or done)",
                               ["step"], registry=registry)
        self.transitions = Counter("storefleet_rollout_transitions",
                                   "rollouts entering a state", ["state"], registry=registry)


def waves_of(n: int, canary: int, size: int) -> list[int]:
    """The wave of each of ``n`` targets, in order: canary first, then groups."""
    return [0 if i < canary else 1 + (i - canary) // size for i in range(n)]


def create(session: Session, plan: RolloutPlan, *, now_ms: int) -> Rollout:
    artifact = session.get(Artifact, plan.sha256)
    if artifact is None:
        raise RolloutError(404, f"no artifact {plan.sha256}", reason="unknown_artifact")
    chosen = resolve(session, plan.selection(), artifact=artifact)
    rollout = Rollout(
        id=uuid7(now_ms), sha256=plan.sha256, target=artifact.target, version=artifact.version,
        device=chosen.device, stores=chosen.stores,
        selection=plan.model_dump(include={"stores", "regions", "groups", "models"}),
        canary_size=plan.canary_size,
        wave_size=plan.wave_size, success_pct=plan.success_pct,
        failure_threshold=plan.failure_threshold, deadline_s=plan.deadline_s,
        state="running", wave=0, created_ms=now_ms, updated_ms=now_ms, reason=None)
    session.add(rollout)
    for store_id, wave in zip(chosen.stores, waves_of(len(chosen.stores), plan.canary_size,
                                                       plan.wave_size), strict=True):
        session.add(RolloutTarget(rollout_id=rollout.id, store_id=store_id, wave=wave,
                                  device=chosen.devices[store_id], state="waiting",
                                  offered_ms=None, deadline_ms=None, detail=None,
                                  updated_ms=now_ms))
    return rollout


def targets_of(session: Session, rollout_id: str) -> list[RolloutTarget]:
    return list(session.scalars(select(RolloutTarget).where(
        RolloutTarget.rollout_id == rollout_id).order_by(RolloutTarget.wave,
                                                         RolloutTarget.store_id)))


def set_state(session: Session, rollout_id: str, to: str, *, now_ms: int) -> Rollout:
    """pause (running -> paused), resume (paused -> running), abort (not yet ended)."""
    rollout = session.get(Rollout, rollout_id, with_for_update=True)
    if rollout is None:
        raise RolloutError(404, f"no rollout {rollout_id!r}", reason="unknown_rollout")
    allowed = {"paused": ("running",), "running": ("paused",),
               "aborted": ("running", "paused", "halted")}[to]
    if rollout.state not in allowed:
        raise RolloutError(409, f"rollout {rollout_id} is {rollout.state}, not "
                           f"{' or '.join(allowed)}", reason="bad_state")
    rollout.state, rollout.updated_ms = to, now_ms
    return rollout


def device_of(rollout: Rollout, target: RolloutTarget) -> str:
    """The device a target's offer names (its own since 0013, else the rollout's)."""
    return target.device or rollout.device


def _fail(session: Session, rollout: Rollout, target: RolloutTarget, detail: str, *,
          now_ms: int) -> None:
    target.state, target.detail, target.updated_ms = "failed", detail, now_ms
    device = device_of(rollout, target)
    if session.get(RolloutFailure, (target.store_id, device, rollout.sha256)) is None:
        session.add(RolloutFailure(store_id=target.store_id, device=device,
                                   sha256=rollout.sha256, rollout_id=rollout.id,
                                   detail=detail, created_ms=now_ms))


def evaluate(session: Session, rollout: Rollout, *, now_ms: int,
             metrics: RolloutMetrics | None = None) -> None:
    """Halt at the failure threshold; advance past a wave that met the success share;
    complete when every target of the last wave is done."""
    if rollout.state not in ("running", "paused"):
        return
    targets = targets_of(session, rollout.id)
    failed = sum(t.state == "failed" for t in targets)
    if failed >= rollout.failure_threshold:
        rollout.state, rollout.updated_ms = "halted", now_ms
        rollout.reason = f"{failed} failed, threshold {rollout.failure_threshold}"
        if metrics:
            metrics.transitions.labels(state="halted").inc()
        logger.warning("rollout %s halted: %s", rollout.id, rollout.reason)
        return
    last = max(t.wave for t in targets)
    while True:
        # A skipped target (its pair failed before) is neither a success nor a failure.
        wave = [t for t in targets if t.wave == rollout.wave and t.state != "skipped"]
        ok = sum(t.state == "succeeded" for t in wave)
        needed = math.ceil(rollout.success_pct * len(wave) / 100)
        if rollout.wave < last and ok >= needed:
            rollout.wave += 1
            rollout.updated_ms = now_ms
            logger.info("rollout %s: wave %d offered", rollout.id, rollout.wave)
            continue
        if ok < needed and all(t.state in TERMINAL_TARGET for t in wave):
            rollout.state, rollout.updated_ms = "halted", now_ms
            rollout.reason = f"wave {rollout.wave}: {ok} of {len(wave)} succeeded, " \
                             f"{rollout.success_pct}% needed"
            if metrics:
                metrics.transitions.labels(state="halted").inc()
            logger.warning("rollout %s halted: %s", rollout.id, rollout.reason)
            return
        break
    if rollout.wave == last and all(t.state in TERMINAL_TARGET for t in targets):
        rollout.state, rollout.updated_ms = "completed", now_ms
        if metrics:
            metrics.transitions.labels(state="completed").inc()
        logger.info("rollout %s completed", rollout.id)


@dataclass(frozen=True, slots=True)
class Offer:
    store_id: str
    msg: CommandMsg


def _due(session: Session, *, now_ms: int, metrics: RolloutMetrics) -> list[Offer]:
    """Deadlines passed become failures; the current wave's waiting targets are offered
    (or skipped when their pair failed before). Returns what to publish."""
    offers: list[Offer] = []
    rollouts = session.scalars(select(Rollout).where(Rollout.state == "running")
                               .with_for_update()).all()
    for rollout in rollouts:
        for target in targets_of(session, rollout.id):
            if (target.state in IN_FLIGHT and target.deadline_ms is not None
                    and now_ms > target.deadline_ms):
                detail = "deadline passed" + (f" (deferred: {target.detail})"
                                              if target.state == "deferred" else "")
                _fail(session, rollout, target, detail, now_ms=now_ms)
        evaluate(session, rollout, now_ms=now_ms, metrics=metrics)
        if rollout.state != "running":
            continue
        due = [t for t in targets_of(session, rollout.id)
               if t.wave <= rollout.wave and t.state == "waiting"]
        windows = windows_of(session, [t.store_id for t in due])
        for target in due:
            device = device_of(rollout, target)
            if session.get(RolloutFailure, (target.store_id, device,
                                            rollout.sha256)) is not None:
                target.state, target.detail = "skipped", "failed before; never offered again"
                target.updated_ms = now_ms
                metrics.offers.labels(result="skipped").inc()
                continue
            window = windows.get(target.store_id)
            if window is not None and not window.open_at(now_ms):
                waiting = f"outside its maintenance window {window.describe()}"
                if target.detail != waiting:  # written once, not at every tick
                    target.detail, target.updated_ms = waiting, now_ms
                    metrics.offers.labels(result="outside_window").inc()
                continue
            deadline = now_ms + rollout.deadline_s * 1000
            args = {"rollout_id": rollout.id, "sha256": rollout.sha256,
                    "target": rollout.target, "version": rollout.version,
                    "device": device, "deadline_ms": deadline}
            cmd_id = uuid7(now_ms)
            # The cloud sends offers by itself: a system sender (decision 0044).
            sender = CommandSender(name=f"rollout:{rollout.id}", role=SYSTEM_ROLE)
            session.add(Command(cmd_id=cmd_id, store_id=target.store_id, target="agent",
                                name=INSTALL_COMMAND, args=args, expires_at=deadline,
                                created_ms=now_ms, status="pending", result=None,
                                error=None, completed_ms=None, sender=sender.name,
                                sender_role=sender.role))
            target.state, target.offered_ms, target.deadline_ms = "offered", now_ms, deadline
            target.detail, target.updated_ms = None, now_ms
            offers.append(Offer(target.store_id, CommandMsg(
                cmd_id=cmd_id, name=INSTALL_COMMAND, args=args, expires_at=deadline,
                ts=now_ms, sender=sender)))
        evaluate(session, rollout, now_ms=now_ms, metrics=metrics)  # all skipped: done
    return offers


def windows_of(session: Session, stores: Sequence[str]) -> dict[str, Window]:
    """The maintenance windows of those of ``stores`` that have one."""
    if not stores:
        return {}
    rows = session.scalars(select(StoreMaintenance).where(
        StoreMaintenance.store_id.in_(sorted(set(stores)))))
    return {r.store_id: Window(r.timezone, r.start_min, r.end_min) for r in rows}


def _unoffer(sessions: sessionmaker[Session], offer: Offer, rollout_id: str) -> None:
    with sessions.begin() as session:
        target = session.get(RolloutTarget, (rollout_id, offer.store_id))
        if target is not None and target.state == "offered":
            target.state, target.offered_ms, target.deadline_ms = "waiting", None, None
        cmd = session.get(Command, offer.msg.cmd_id)
        if cmd is not None:
            cmd.status = "undeliverable"


class RolloutOfferer:
    """Publishes the offers that are due; one tick at a time per process."""

    def __init__(self, *, sessions: sessionmaker[Session], reader: sessionmaker[Session],
                 publisher: Publisher, clock: Clock, metrics: RolloutMetrics,
                 interval_s: float = 2.0) -> None:
        self.sessions, self.reader, self.publisher = sessions, reader, publisher
        self.clock, self.metrics, self.interval_s = clock, metrics, interval_s
        self._lock = asyncio.Lock()

    def _collect(self) -> list[Offer]:
        with self.reader() as session:  # no write lock while no rollout runs
            if session.scalar(select(Rollout.id).where(Rollout.state == "running")
                              .limit(1)) is None:
                return []
        with self.sessions.begin() as session:
            return _due(session, now_ms=self.clock.now_ms(), metrics=self.metrics)

    async def tick(self) -> int:
        async with self._lock:
            offers = await asyncio.to_thread(self._collect)
            for offer in offers:
                try:
                    await self.publisher.publish(topics.cmd(offer.store_id, "agent"),
                                                 encode(offer.msg), qos=1, retain=False)
                    self.metrics.offers.labels(result="published").inc()
                except PublishError as err:  # offered again at the next tick
                    self.metrics.offers.labels(result="publish_failed").inc()
                    logger.error("rollout offer to %s not published: %s", offer.store_id, err)
                    await asyncio.to_thread(_unoffer, self.sessions, offer,
                                            str(offer.msg.args["rollout_id"]))
            return len(offers)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.tick()
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                pass


class RolloutHook:
    """Ingest's post-commit hook for ``rollout_status`` events: idempotent (a report on
    a target already done changes nothing)."""

    def __init__(self, metrics: RolloutMetrics) -> None:
        self.metrics = metrics

    def __call__(self, session: Session, event: Event, now_ms: int) -> None:
        try:
            report = RolloutStatus.model_validate(event.data)
        except ValidationError as err:
            raise ValueError(f"bad rollout_status data: {err.errors()[0]['msg']}") from err
        rollout = session.get(Rollout, report.rollout_id, with_for_update=True)
        target = session.get(RolloutTarget, (report.rollout_id, event.store_id))
        if (rollout is None or target is None or report.sha256 != rollout.sha256
                or target.state in TERMINAL_TARGET):
            self.metrics.reports.labels(step="ignored").inc()
            return
        self.metrics.reports.labels(step=report.step).inc()
        if report.step == "succeeded":
            target.state, target.detail, target.updated_ms = "succeeded", report.detail, now_ms
        elif report.step == "failed":
            _fail(session, rollout, target, report.detail, now_ms=now_ms)
        elif report.step == "deferred":  # busy on the box: not a failure, deadline runs
            target.state, target.detail, target.updated_ms = "deferred", report.detail, now_ms
        else:
            target.state, target.detail, target.updated_ms = "installing", report.step, now_ms
        evaluate(session, rollout, now_ms=now_ms, metrics=self.metrics)


def progress(targets: Sequence[RolloutTarget]) -> list[dict[str, object]]:
    """Per wave: its size and how many targets are in each state."""
    waves: dict[int, dict[str, int]] = {}
    for t in targets:
        counts = waves.setdefault(t.wave, {})
        counts[t.state] = counts.get(t.state, 0) + 1
    return [{"wave": w, "size": sum(c.values()), "states": c} for w, c in sorted(waves.items())]
