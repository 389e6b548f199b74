"""Fleet gauges for HQ, computed from what the cloud has ingested (decision 0054).

    registry.register(FleetCollector(sessions=state.reader, clock=state.clock))

HQ watches a 5,000-store chain from the cloud's ``/metrics`` alone, never by scraping
every store box. On a scrape this collector reads the database with a handful of
``GROUP BY`` queries (stores, devices, the stores whose devices report alarms, the
boxes' own outbox telemetry, rollouts) and the stores' content convergence
(``cloud.content.service.figures``: one pass over the manifests and the boxes'
reports), and keeps the answer for ``cache_s``, so several Prometheus servers, or a
scrape every second, cost one computation per ``cache_s``. Every API replica exports
the same figures: dashboards and alerts take ``max`` over instances, never ``sum``.

Labels are bounded: ``region`` (HQ's own ``store_regions``; ``none`` for a store in no
region), ``family`` (a device's kind), alarm ``kind``, and fixed ``state`` values; never
a store, device, member or event id. Family and alarm kinds come from the boxes, so a
value that is not a plain lower-case code, or past the ``MAX_VALUES`` most common, is
reported as ``other``.

Outbox figures are what each box reports as its own telemetry (device ``agent``:
``outbox_depth``, ``outbox_oldest_age_s``; ``edge_agent.kernel.devices``), for stores
online now: an offline store's outbox is unknown, and it is counted in
``storefleet_fleet_stores{state="offline"}`` instead.

A failing database is logged and counted (``storefleet_fleet_collect_errors_total``);
the scrape then answers the last figures it has, or none.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import String, cast, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cloud.content.service import ContentFigures
from cloud.content.service import figures as content_figures
from cloud.db.models import Device, Shadow, Store, TelemetryLatest
from cloud.db.models_loyalty import StoreRegion
from cloud.db.models_rollouts import Rollout, RolloutTarget
from protocols.clock import Clock

logger = logging.getLogger(__name__)

AGENT = "agent"  # the box's own telemetry: device id and kind (not a device HQ counts)
NO_REGION = "none"
OTHER = "other"
# A label value from a box: a lower-case code such as "esl" or "paper_low".
_CODE = re.compile(r"[a-z][a-z0-9_-]{0,47}")
# Distinct families or alarm kinds kept as labels; the rest are "other". Real chains
# have about a dozen families, each with a handful of alarm codes.
MAX_VALUES = 64
# A store whose oldest unsent event is older than this is "behind": twice the box's
# 30 s wait for the cloud's acknowledgement (decision 0028) has passed.
BEHIND_S = 60.0
ACTIVE_ROLLOUTS = ("running", "paused")


@dataclass
class FleetFigures:
    """One computation's result; label tuples in the order of the metric's labels."""

    stores: Tally[tuple[str, str]] = field(default_factory=Tally)  # region, state
    devices: Tally[tuple[str, str, str]] = field(default_factory=Tally)  # family, region, state
    alarms: Tally[tuple[str, str]] = field(default_factory=Tally)  # family, kind
    outbox_events: dict[str, float] = field(default_factory=dict)  # region
    outbox_oldest_s: dict[str, float] = field(default_factory=dict)
    outbox_behind: Tally[str] = field(default_factory=Tally)
    outbox_reporting: Tally[str] = field(default_factory=Tally)
    rollouts: Tally[str] = field(default_factory=Tally)  # state
    rollout_targets: Tally[str] = field(default_factory=Tally)
    content: ContentFigures | None = None
    seconds: float = 0.0


class FleetCollector(Collector):
    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock,
                 registry: CollectorRegistry, cache_s: float = 10.0) -> None:
        self._sessions = sessions
        self._clock = clock
        self._cache_s = cache_s
        self._lock = threading.Lock()  # scrapes run in the API's thread pool
        self._figures: FleetFigures | None = None
        self._at: float | None = None
        self.errors = Counter("storefleet_fleet_collect_errors",
                              "Fleet gauge computations the database failed (the last "
                              "figures were served)", registry=registry)
        self.seconds = Gauge("storefleet_fleet_collect_seconds",
                             "Wall time of the last fleet gauge computation", registry=registry)

    def describe(self) -> Iterable[Metric]:
        return []  # no database read when registered; names come with the first scrape

    def collect(self) -> Iterator[Metric]:
        figures = self.figures()
        if figures is not None:
            yield from _families(figures)

    def figures(self) -> FleetFigures | None:
        """The cached figures, computed again when older than ``cache_s``."""
        with self._lock:
            now = self._clock.monotonic()
            if self._at is not None and now - self._at < self._cache_s:
                return self._figures
            try:
                with self._sessions() as session:
                    self._figures = compute(session)
            except SQLAlchemyError as err:
                self.errors.inc()
                logger.error("fleet gauges not computed (serving the last ones): %s", err)
            else:
                self.seconds.set(self._figures.seconds)
            self._at = now  # a failing database is asked again after cache_s, not per scrape
            return self._figures


def compute(session: Session) -> FleetFigures:
    """Every fleet figure from a few aggregate queries (none per store)."""
    started = time.perf_counter()
    out = FleetFigures()
    region = func.coalesce(StoreRegion.region, NO_REGION)
    for name, online, n in session.execute(
            select(region, Store.online, func.count())
            .outerjoin(StoreRegion, StoreRegion.store_id == Store.store_id)
            .group_by(region, Store.online)):
        out.stores[name, _state(online)] += n
        out.stores[name, _state(not online)] += 0  # both states per region: 0, not absent

    families = _Bounded()
    rows = session.execute(
        select(Device.kind, region, Device.online, func.count())
        .outerjoin(StoreRegion, StoreRegion.store_id == Device.store_id)
        .where(Device.kind != AGENT)
        .group_by(Device.kind, region, Device.online)).all()
    for kind, _, _, n in rows:
        families.count(kind, n)
    for kind, name, online, n in rows:
        out.devices[families.label(kind), name, _state(online)] += n
        out.devices[families.label(kind), name, _state(not online)] += 0

    _alarms(session, out)
    _outbox(session, out)
    for state, n in session.execute(select(Rollout.state, func.count())
                                    .group_by(Rollout.state)):
        out.rollouts[_code(state)] += n
    for state, n in session.execute(
            select(RolloutTarget.state, func.count())
            .join(Rollout, Rollout.id == RolloutTarget.rollout_id)
            .where(Rollout.state.in_(ACTIVE_ROLLOUTS))
            .group_by(RolloutTarget.state)):
        out.rollout_targets[_code(state)] += n
    out.content = content_figures(session)
    out.seconds = time.perf_counter() - started
    return out


def _alarms(session: Session, out: FleetFigures) -> None:
    """Alarm kinds of every device, from the agent shadows of the stores whose devices
    report a non-zero ``alarms`` count in their telemetry (usually few of them)."""
    alarmed = select(TelemetryLatest.store_id).where(
        TelemetryLatest.metric == "alarms",
        # the JSON value as text: portable between SQLite and PostgreSQL
        cast(TelemetryLatest.value, String).notin_(["0", "null", "false"]),
    ).distinct()
    kinds: Tally[tuple[str, str]] = Tally()
    for (reported,) in session.execute(
            select(Shadow.reported).where(Shadow.target == AGENT,
                                          Shadow.store_id.in_(alarmed))):
        health = (reported or {}).get("devices_health")
        for device in (health.values() if isinstance(health, dict) else ()):
            if not isinstance(device, dict) or not isinstance(device.get("alarms"), list):
                continue
            for kind in device["alarms"]:
                kinds[str(device.get("family")), str(kind)] += 1
    families, names = _Bounded(), _Bounded()
    for (family, kind), n in kinds.items():
        families.count(family, n)
        names.count(kind, n)
    for (family, kind), n in kinds.items():
        out.alarms[families.label(family), names.label(kind)] += n


def _outbox(session: Session, out: FleetFigures) -> None:
    region = func.coalesce(StoreRegion.region, NO_REGION)
    per_store: dict[str, dict[str, Any]] = {}
    for store_id, name, metric, value in session.execute(
            select(TelemetryLatest.store_id, region, TelemetryLatest.metric,
                   TelemetryLatest.value)
            .join(Store, Store.store_id == TelemetryLatest.store_id)
            .outerjoin(StoreRegion, StoreRegion.store_id == TelemetryLatest.store_id)
            .where(TelemetryLatest.device_id == AGENT, Store.online,
                   TelemetryLatest.metric.in_(("outbox_depth", "outbox_oldest_age_s")))):
        row = per_store.setdefault(store_id, {"region": name})
        row[metric] = value
    for name in {r for r, _ in out.stores}:
        out.outbox_events[name] = 0.0
        out.outbox_oldest_s[name] = 0.0
        out.outbox_behind[name] += 0
        out.outbox_reporting[name] += 0
    for row in per_store.values():
        name = row["region"]
        depth, age = _number(row.get("outbox_depth")), _number(row.get("outbox_oldest_age_s"))
        out.outbox_reporting[name] += 1
        out.outbox_events[name] = out.outbox_events.get(name, 0.0) + depth
        out.outbox_oldest_s[name] = max(out.outbox_oldest_s.get(name, 0.0), age)
        out.outbox_behind[name] += age > BEHIND_S


def _families(f: FleetFigures) -> Iterator[Metric]:
    def gauge(name: str, doc: str, labels: list[str],
              values: Iterable[tuple[tuple[str, ...], float]]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=labels)
        for key, value in sorted(values):
            family.add_metric(list(key), value)
        return family

    yield gauge("storefleet_fleet_stores", "Stores by region and state (online: the "
                "latest birth stands; offline: a death or none)", ["region", "state"],
                f.stores.items())
    yield gauge("storefleet_fleet_devices", "Devices by family, their store's region and "
                "state", ["family", "region", "state"], f.devices.items())
    yield gauge("storefleet_fleet_device_alarms", "Active device alarms by family and kind "
                "(from the boxes' reported device health)", ["family", "kind"],
                f.alarms.items())
    yield gauge("storefleet_fleet_outbox_events", "Events waiting in the outboxes of the "
                "region's online stores, as each box reports", ["region"],
                (((r,), v) for r, v in f.outbox_events.items()))
    yield gauge("storefleet_fleet_outbox_oldest_age_seconds", "Age of the oldest event "
                "waiting in any online store's outbox in the region, as the box reported it",
                ["region"], (((r,), v) for r, v in f.outbox_oldest_s.items()))
    yield gauge("storefleet_fleet_outbox_stores_behind", f"Online stores whose oldest "
                f"outbox event is older than {BEHIND_S:.0f} s", ["region"],
                (((r,), v) for r, v in f.outbox_behind.items()))
    yield gauge("storefleet_fleet_outbox_stores_reporting", "Online stores whose box reports "
                "its outbox (older agents do not)", ["region"],
                (((r,), v) for r, v in f.outbox_reporting.items()))
    yield gauge("storefleet_fleet_rollouts", "Rollouts by state", ["state"],
                (((s,), v) for s, v in f.rollouts.items()))
    yield gauge("storefleet_fleet_rollout_targets", "Targets of running and paused "
                "rollouts by state", ["state"],
                (((s,), v) for s, v in f.rollout_targets.items()))
    if (c := f.content) is not None:
        yield gauge("storefleet_content_stores", "Stores by content convergence state "
                    "(converged, pending, refused: the box refused its newest manifest, "
                    "unpublished)", ["state"], (((s,), v) for s, v in c.stores.items()))
        yield gauge("storefleet_content_parts", "Stores by part (pricebook: the till's "
                    "book, schedule: the audio units', playlists: the screens') and "
                    "convergence state", ["part", "state"], c.parts.items())
        yield gauge("storefleet_content_labels", "Shelf labels of every store by state "
                    "(current: showing the till's price, pending: sent, not confirmed, "
                    "stale: not confirmed within the stale bound)", ["state"],
                    (((s,), v) for s, v in c.labels.items()))


class _Bounded:
    """Keeps the MAX_VALUES most common codes of one label; the rest become 'other'."""

    def __init__(self) -> None:
        self._counts: Tally[str] = Tally()
        self._kept: set[str] | None = None

    def count(self, value: str, n: int) -> None:
        self._counts[value] += n

    def label(self, value: str) -> str:
        if self._kept is None:
            self._kept = {v for v, _ in self._counts.most_common(MAX_VALUES)}
        return value if value in self._kept and _CODE.fullmatch(value) else OTHER


def _code(value: str) -> str:
    return value if _CODE.fullmatch(value) else OTHER


def _state(online: bool) -> str:
    return "online" if online else "offline"


def _number(value: Any) -> float:
    """A reported reading as a number; anything else (a string, a bool) counts as 0."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0.0
