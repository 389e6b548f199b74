"""A simulated ESL access point with sleeping labels behind it.

Each label wakes every ``checkin_interval_s`` (real labels: about 40 s; each label has
its own phase), sometimes misses a check-in (``miss_prob``, seeded), pulls the job the
AP holds for it, shows it and acknowledges with battery and RSSI. The AP keeps only the
latest job per known label, so a flood of jobs cannot grow its memory; jobs for unknown
labels and garbage are counted and dropped.

Time comes from the injected ``Clock``: with ``autostep=False`` a test moves a
``ManualClock`` and calls ``step()``, so a day of check-ins runs in seconds.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from firmware_sim.busdevice import BusDeviceSim
from firmware_sim.esl.firmware import ApBootloader
from protocols import decode, encode, topics
from protocols.clock import Clock, SystemClock
from protocols.errors import ProtocolError
from protocols.esl import (
    ACK,
    DEVICE_KIND,
    FW,
    JOB,
    STATUS,
    ApStatus,
    FwDown,
    FwResult,
    LabelAck,
    LabelJob,
)
from protocols.ids import uuid7
from protocols.messages import DeviceState

logger = logging.getLogger(__name__)

# Jobs are small; anything bigger is garbage and is dropped before parsing.
MAX_JOB_BYTES = 16 * 1024


@dataclass(slots=True)
class SimLabel:
    label_id: str
    next_ms: int
    battery_pct: float
    rssi_dbm: int
    shown_hash: str | None = None
    shown_version: int = 0
    shown_price_minor: int | None = None
    checkins: int = 0
    missed: int = 0


class EslApSim(BusDeviceSim):
    kind = DEVICE_KIND
    model = "sim-esl-ap"
    down_type = JOB
    more_down_types = (FW,)
    max_queued_in = 10_000

    def __init__(
        self,
        bus_url: str,
        *,
        ap_id: str,
        labels: Sequence[str],
        clock: Clock | None = None,
        checkin_interval_s: float = 40.0,
        miss_prob: float = 0.05,
        status_interval_s: float = 60.0,
        seed: int = 7,
    ) -> None:
        super().__init__(bus_url, topics.check_id(ap_id, "access point id"))
        self.ap_id = self.device_id
        self.clock = clock or SystemClock()
        self.interval_ms = int(checkin_interval_s * 1000)
        self.status_interval_ms = int(status_interval_s * 1000)
        self.miss_prob = miss_prob
        self.rng = random.Random(seed)
        now = self.clock.now_ms()
        self.labels = {
            label_id: SimLabel(
                label_id=label_id,
                next_ms=now + self.rng.randrange(max(1, self.interval_ms)),  # own phase
                battery_pct=round(self.rng.uniform(60.0, 100.0), 1),
                rssi_dbm=self.rng.randint(-85, -45),
            )
            for label_id in labels
        }
        self.pending: dict[str, LabelJob] = {}
        self.boot_id = uuid7(now)
        self.stats: Counter[str] = Counter()
        self._next_status_ms = now
        self.bootloader = ApBootloader(version=self.fw)

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def restart(self) -> None:
        """Simulate a power cycle: a new boot id and an empty job queue."""
        self.pending.clear()
        self.boot_id = uuid7(self.clock.now_ms())
        self._next_status_ms = self.clock.now_ms()

    # ---- jobs in ------------------------------------------------------------------------

    async def on_message(self, payload: bytes) -> None:
        self.on_job(payload)

    def on_job(self, payload: bytes) -> None:
        try:
            job = decode(payload, LabelJob, max_bytes=MAX_JOB_BYTES)
        except ProtocolError as err:
            self.stats["bad_job"] += 1
            logger.debug("esl sim %s: bad job: %s", self.ap_id, err)
            return
        if job.label_id not in self.labels:
            self.stats["unknown_label"] += 1
            return
        self.stats["jobs"] += 1
        self.pending[job.label_id] = job  # the latest job wins: memory bounded by labels

    # ---- firmware (decision 0039) ---------------------------------------------------------

    async def on_down(self, type_: str, payload: bytes) -> None:
        try:
            msg = decode(payload, FwDown, max_bytes=MAX_JOB_BYTES).root
        except ProtocolError as err:
            self.stats["bad_fw"] += 1
            logger.debug("esl sim %s: bad firmware message: %s", self.ap_id, err)
            return
        reply = self.bootloader.handle(msg)
        if reply is None:
            return  # lost (fault injection)
        await self.publish_up(FW, encode(reply))
        if isinstance(reply, FwResult) and reply.outcome == "ok" and reply.fw_version != self.fw:
            await self.reboot_into(reply.fw_version)

    async def reboot_into(self, version: str) -> None:
        """Run the new firmware: a restart (new boot id, queue lost), the retained state
        and the next status say the new version."""
        self.fw = version
        self.restart()
        state = DeviceState(online=True, model=self.model, fw=self.fw, ts=self.now_ms())
        await self.publish_up("state", encode(state), retain=True)

    # ---- check-ins out -------------------------------------------------------------------

    async def step(self) -> int:
        """Run every check-in due by now; returns the number of acks published."""
        now = self.clock.now_ms()
        acks: list[LabelAck] = []
        for label in self.labels.values():
            while label.next_ms <= now:
                at = label.next_ms
                label.next_ms += self.interval_ms
                if self.rng.random() < self.miss_prob:
                    label.missed += 1
                    continue
                label.checkins += 1
                job = self.pending.pop(label.label_id, None)
                if job is not None:
                    acks.append(self._apply(label, job, at))
                elif label.label_id not in self.pending and label.next_ms <= now:
                    # Nothing to pull: jump over the idle check-ins (a day is 2,160 of them).
                    skipped = (now - label.next_ms) // self.interval_ms + 1
                    label.checkins += int(skipped)
                    label.next_ms += int(skipped) * self.interval_ms
        for ack in acks:
            await self.publish_up(ACK, encode(ack))
        self.stats["acks"] += len(acks)
        if now >= self._next_status_ms:
            self._next_status_ms = now + self.status_interval_ms
            status = ApStatus(boot_id=self.boot_id, labels=len(self.labels),
                              pending=len(self.pending), fw_version=self.fw, ts=now)
            await self.publish_up(STATUS, encode(status))
            self.stats["status"] += 1
        return len(acks)

    def _apply(self, label: SimLabel, job: LabelJob, at_ms: int) -> LabelAck:
        # An e-paper refresh is the costly part of a label's battery budget.
        label.battery_pct = max(0.0, round(label.battery_pct - 0.05, 2))
        label.shown_hash = job.content_hash
        label.shown_version = job.version
        label.shown_price_minor = job.content.price_minor
        rssi = max(-120, min(-20, label.rssi_dbm + self.rng.randint(-3, 3)))
        return LabelAck(label_id=label.label_id, job_id=job.job_id, content_hash=job.content_hash,
                        battery_pct=label.battery_pct, rssi_dbm=rssi, ts=at_ms)


async def start_esl_ap_sim(
    bus_url: str,
    *,
    ap_id: str,
    labels: Sequence[str],
    clock: Clock | None = None,
    checkin_interval_s: float = 40.0,
    miss_prob: float = 0.05,
    status_interval_s: float = 60.0,
    seed: int = 7,
    autostep: bool = True,
    tick_s: float = 1.0,
) -> EslApSim:
    """Connect a simulated access point to the bus and start it; ``await sim.aclose()``."""
    sim = EslApSim(bus_url, ap_id=ap_id, labels=labels, clock=clock,
                   checkin_interval_s=checkin_interval_s, miss_prob=miss_prob,
                   status_interval_s=status_interval_s, seed=seed)
    await sim.start(autostep=autostep, tick_s=tick_s)
    return sim
