"""The audio broadcast unit driver: plays the store's schedule on one unit.

One driver per unit (family and bus kind ``audio``). The schedule (``audio_schedule``
command or desired-shadow key) is validated, stored in the local cache with its
assets (``audio_asset`` puts one, content-addressed by sha256) and survives restarts,
so playback goes on while the cloud is unreachable. At each change of the schedule's
output the driver publishes the unit's ``AudioOutput`` (retained, with a rising
``seq``); between changes it sleeps until ``Scheduler.next_change_ms``. Presence
reports (``store/presence/{sensor}/up/presence``) start presence-triggered spots.
The schedule's cached assets go to the unit in acknowledged, resumable chunks
(``transfer.AssetSender``; again after the unit reboots), so the unit plays the real
recordings (WAV) it was sent (decision 0048).

Options (``AudioOptions``): ``zones`` (list; default every zone of the schedule),
``cache_dir`` (default ``<agent data_dir>/audio/<device id>``), ``tick_s`` (longest
sleep), ``offline_after_s``, ``max_msgs_per_s``. Desired key (decision 0037):
``audio_schedule`` (an ``AudioSchedule``). Commands: ``audio_schedule`` (alias
``set_schedule``) {schedule}, ``audio_asset`` {data_b64}, ``audio_status``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from pydantic import Field, PositiveFloat, ValidationError

from edge_agent.drivers.audio.cache import AssetCache
from edge_agent.drivers.audio.metrics import audio_metrics
from edge_agent.drivers.audio.schedule import Scheduler
from edge_agent.drivers.audio.transfer import AssetSender, AssetTransferError
from edge_agent.drivers.base import (
    CommandArgs,
    CommandRejected,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverError,
    DriverOptions,
    command,
    desired,
    first_error,
    register,
)
from edge_agent.drivers.capabilities import AudioPlayer
from edge_agent.drivers.links import TokenBucket
from protocols import decode, encode, topics
from protocols.audio import (
    ASSET,
    DEVICE_KIND,
    OUTPUT,
    PLAYING,
    PRESENCE,
    PRESENCE_KIND,
    STATUS,
    AssetAck,
    AudioOutput,
    AudioSchedule,
    PresenceReport,
    UnitPlaying,
    UnitStatus,
    ZoneOutput,
)
from protocols.errors import ProtocolError

logger = logging.getLogger(__name__)

NO_SCHEDULE = "audio_no_schedule"
ASSET_MISSING = "audio_asset_missing"
# Unit and sensor messages are tiny; a schedule document may be large.
MAX_MESSAGE_BYTES = 4 * 1024
MAX_SCHEDULE_BYTES = 1024 * 1024
# One asset per command: a 5 MiB spot is minutes of speech; music comes with the manifest.
MAX_ASSET_BYTES = 5 * 1024 * 1024


class AudioOptions(DriverOptions):
    zones: list[str] | None = None  # None: every zone of the schedule
    cache_dir: Path | None = None  # None: <agent data_dir>/audio/<device id>
    tick_s: PositiveFloat = 1.0  # longest sleep between output checks
    # Units send a status every 10 s; three missed ones and the unit counts as offline.
    offline_after_s: PositiveFloat = 30.0
    max_msgs_per_s: PositiveFloat = 50.0
    asset_ack_timeout_s: PositiveFloat = 2.0  # no ack for a chunk this long: ask again


class ScheduleArgs(CommandArgs):
    schedule: dict[str, Any]  # an ``AudioSchedule``, checked by ``set_schedule``


class AssetArgs(CommandArgs):
    # base64 of at most MAX_ASSET_BYTES (4 characters per 3 bytes, plus padding)
    data_b64: str = Field(max_length=MAX_ASSET_BYTES * 4 // 3 + 4)


@register
class AudioDriver(Driver, AudioPlayer):
    family = "audio"
    Options = AudioOptions
    options: AudioOptions

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        opts = self.options
        cache_dir = opts.cache_dir
        if cache_dir is None and ctx.data_dir is not None:
            cache_dir = Path(ctx.data_dir) / "audio" / config.device_id
        if cache_dir is None:
            raise DriverError(config.device_id, "needs option cache_dir (or an agent data_dir)")
        self.zones: list[str] | None = opts.zones
        self.tick_s = opts.tick_s
        self.offline_after_ms = int(opts.offline_after_s * 1000)
        rate = opts.max_msgs_per_s
        self._bucket = TokenBucket(rate=rate, burst=rate * 4, clock=ctx.clock)
        self.cache = AssetCache(cache_dir)
        self.metrics = audio_metrics(ctx.registry)
        self.scheduler: Scheduler | None = None
        self.missing: list[str] = []  # track ids of the schedule without a cached asset
        self.seq = 0
        self.last_output: dict[str, ZoneOutput] | None = None
        self.acked_seq = 0
        self.last_seen_ms: int | None = None
        self._wake = asyncio.Event()
        self._sync_wanted = asyncio.Event()  # the schedule, the cache or the unit changed
        self._sync_failed = False
        self.unit_boot: str | None = None
        self.sender = AssetSender(config.device_id, self._publish_chunk,
                                  ack_timeout_s=opts.asset_ack_timeout_s)
        self._subscribed = False
        self._loaded = False

    # ---- schedule and assets ---------------------------------------------------------------

    async def _load_cached(self) -> None:
        """Start from the schedule stored by an earlier run (offline start)."""
        self._loaded = True
        raw = await asyncio.to_thread(self.cache.load_schedule)  # file I/O off the loop
        if raw is None:
            return
        try:
            schedule = decode(raw, AudioSchedule, max_bytes=MAX_SCHEDULE_BYTES)
            await self._activate(schedule)
            logger.info("audio %s: playing cached schedule v%d", self.device_id, schedule.version)
        except (ProtocolError, ZoneInfoNotFoundError) as err:
            self.metrics.bad.labels(device_id=self.device_id, reason="cached_schedule").inc()
            logger.error("audio %s: cached schedule unusable: %s", self.device_id, err)

    async def _activate(self, schedule: AudioSchedule) -> None:
        def check() -> list[str]:  # re-hashes every asset: blocking file I/O, so in a thread
            return sorted(t for t, tr in schedule.tracks.items() if not self.cache.has(tr.sha256))

        missing = await asyncio.to_thread(check)
        available = set(schedule.tracks) - set(missing)
        self.scheduler = Scheduler(schedule, available=available)
        self.missing = missing
        self.metrics.missing.labels(device_id=self.device_id).set(len(missing))
        self.metrics.version.labels(device_id=self.device_id).set(schedule.version)
        self._wake.set()
        self._sync_wanted.set()

    async def set_schedule(self, document: Mapping[str, Any]) -> dict[str, Any]:
        try:
            schedule = AudioSchedule.model_validate(dict(document))
            Scheduler(schedule)  # the timezone must exist
        except ValidationError as err:
            where, msg = first_error(err)
            raise CommandRejected(self.device_id, f"bad schedule at {where}: {msg}",
                                  field=f"schedule.{where}", reason="bad_argument") from err
        except ZoneInfoNotFoundError as err:
            raise CommandRejected(self.device_id, f"unknown timezone {document.get('timezone')!r}",
                                  field="schedule.timezone", reason="bad_argument") from err
        current = self.scheduler.schedule.version if self.scheduler else 0
        if schedule.version <= current:
            return {"applied": False, "version": current, "missing_assets": self.missing}
        await asyncio.to_thread(self.cache.save_schedule, encode(schedule))  # fsync: thread
        await self._activate(schedule)
        return {"applied": True, "version": schedule.version, "missing_assets": self.missing}

    @property
    def schedule_version(self) -> int | None:
        return self.scheduler.schedule.version if self.scheduler else None

    @property
    def unit_ready(self) -> bool:
        """The unit holds every recording its schedule plays (sent and acknowledged)."""
        if self.scheduler is None:
            return False
        schedule = self.scheduler.schedule
        wanted = {schedule.tracks[t].sha256 for t in self.scheduler.playable}
        return wanted <= self.sender.unit_has

    async def has_asset(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.cache.has, sha256)  # re-hashes: a thread

    async def put_asset(self, data: bytes) -> str:
        digest = await asyncio.to_thread(self.cache.put, data)  # fsync: thread
        if self.scheduler is not None and self.missing:
            await self._activate(self.scheduler.schedule)  # a missing track may be playable now
        return digest

    async def _publish_chunk(self, payload: bytes) -> None:
        topic = topics.local(DEVICE_KIND, self.device_id, "down", ASSET)
        await self.ctx.publish_local(topic, payload, qos=1, retain=False)

    async def sync_assets(self) -> int:
        """Send the unit every cached asset of the schedule it lacks; returns how many
        were sent. A failed asset is counted and logged, and the others still go."""
        if self.scheduler is None:
            return 0
        schedule = self.scheduler.schedule
        wanted = sorted({schedule.tracks[t].sha256 for t in self.scheduler.playable}
                        - self.sender.unit_has)
        sent = 0
        self._sync_failed = False
        for sha in wanted:
            try:
                data = await asyncio.to_thread(self.cache.read, sha)  # re-hash: a thread
                sent_bytes = await self.sender.send(sha, data)
            except (OSError, AssetTransferError) as err:
                reason = err.reason if isinstance(err, AssetTransferError) else "cache"
                self.metrics.asset_failures.labels(device_id=self.device_id, reason=reason).inc()
                logger.error("audio %s: %s", self.device_id, err)
                # the unit's next status tries again, unless it cannot play the file
                self._sync_failed |= reason != "unsupported_format"
                if reason == "stalled":
                    break  # the unit does not answer: the other assets would stall too
                continue
            self.metrics.asset_bytes.labels(device_id=self.device_id).inc(sent_bytes)
            sent += 1
        return sent

    async def _sync_loop(self) -> None:
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted.clear()
            await self.sync_assets()

    @command("audio_schedule", ScheduleArgs)
    @command("set_schedule", ScheduleArgs)
    async def _schedule(self, args: ScheduleArgs) -> dict[str, Any]:
        return await self.set_schedule(args.schedule)

    @desired("audio_schedule", AudioSchedule)
    async def _desired_schedule(self, schedule: AudioSchedule) -> AudioSchedule | None:
        """The desired shadow's schedule; the one in effect is what is reported."""
        await self.set_schedule(schedule.model_dump(mode="json"))
        return self.scheduler.schedule if self.scheduler else None

    @command("audio_asset", AssetArgs)
    async def _asset(self, args: AssetArgs) -> dict[str, Any]:
        try:
            data = base64.b64decode(args.data_b64, validate=True)
        except binascii.Error as err:
            raise CommandRejected(self.device_id, "data_b64 is not base64", field="data_b64",
                                  reason="bad_argument") from err
        try:
            return {"sha256": await self.put_asset(data)}
        except OSError as err:
            raise CommandRejected(self.device_id, str(err)) from err

    @command("audio_status")
    async def _audio_status(self, args: Any) -> dict[str, Any]:
        return self._status()

    # ---- run loop ------------------------------------------------------------------------------

    def subscribe(self) -> None:
        """Listen to the unit and the presence sensors (once: run() restarts)."""
        if not self._subscribed:
            self.ctx.on_local(DEVICE_KIND, self._on_unit)
            self.ctx.on_local(PRESENCE_KIND, self._on_presence)
            self._subscribed = True

    async def run(self) -> None:
        self.subscribe()
        if not self._loaded:
            await self._load_cached()
        self.last_output = None  # after a restart, publish the current output again
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._sync_loop(), name=f"audio-assets-{self.device_id}")
            await self._output_loop()

    async def _output_loop(self) -> None:
        while True:
            wait_s = await self.tick()
            self._wake.clear()
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancellation that races with completion (the task then never stops).
                async with asyncio.timeout(max(0.01, wait_s)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def tick(self) -> float:
        """Publish the output if it changed; returns seconds until the next possible change."""
        if not self._loaded:
            await self._load_cached()
        if self.scheduler is None:
            return self.tick_s
        now = self.ctx.clock.now_ms()
        output = self.scheduler.output(now, self.zones)
        if output != self.last_output:
            self.seq += 1
            msg = AudioOutput(seq=self.seq, ts=now, zones=list(output.values()))
            topic = topics.local(DEVICE_KIND, self.device_id, "down", OUTPUT)
            # Retained: a unit that (re)connects starts with what should play now.
            await self.ctx.publish_local(topic, encode(msg), qos=1, retain=True)
            self.last_output = output
            self.metrics.outputs.labels(device_id=self.device_id).inc()
        return min(self.tick_s, (self.scheduler.next_change_ms(now) - now) / 1000)

    # ---- messages from the unit and the presence sensors ------------------------------------

    def _bad(self, reason: str) -> None:
        self.metrics.bad.labels(device_id=self.device_id, reason=reason).inc()

    async def _on_unit(self, device_id: str, type_: str, payload: bytes) -> None:
        if device_id != self.device_id:
            return  # another unit's driver
        if type_ == ASSET:  # acks pace the transfer itself: not rate limited
            try:
                self.sender.on_ack(decode(payload, AssetAck, max_bytes=MAX_MESSAGE_BYTES))
            except ProtocolError as err:
                self._bad(getattr(err, "reason", "invalid"))
            return
        if not self._bucket.take():
            self._bad("flood")
            return
        try:
            if type_ == PLAYING:
                playing = decode(payload, UnitPlaying, max_bytes=MAX_MESSAGE_BYTES)
                self.acked_seq = max(self.acked_seq, min(playing.seq, self.seq))
            elif type_ == STATUS:
                status = decode(payload, UnitStatus, max_bytes=MAX_MESSAGE_BYTES)
                if status.boot_id != self.unit_boot:  # a rebooted unit holds no assets
                    self.unit_boot = status.boot_id
                    self.sender.unit_rebooted()
                    self._sync_wanted.set()
                elif self._sync_failed:
                    self._sync_wanted.set()
            else:
                self._bad("unknown_type")
                return
        except ProtocolError as err:
            self._bad(getattr(err, "reason", "invalid"))
            return
        self.last_seen_ms = self.ctx.clock.now_ms()

    async def _on_presence(self, sensor_id: str, type_: str, payload: bytes) -> None:
        if type_ != PRESENCE or self.scheduler is None:
            return
        if not self._bucket.take():
            self._bad("flood")
            return
        try:
            report = decode(payload, PresenceReport, max_bytes=MAX_MESSAGE_BYTES)
        except ProtocolError as err:
            self._bad(getattr(err, "reason", "invalid"))
            return
        started = self.scheduler.on_presence(sensor_id, present=report.present,
                                             now_ms=self.ctx.clock.now_ms())
        if started:
            logger.info("audio %s: presence at %s starts %s", self.device_id, sensor_id, started)
            self._wake.set()

    # ---- health --------------------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        playing = {
            zone: {"music": out.music.track_id if out.music else None,
                   "voice": out.voice.track_id if out.voice else None}
            for zone, out in (self.last_output or {}).items()
        }
        return {
            "schedule_version": self.scheduler.schedule.version if self.scheduler else None,
            "missing_assets": self.missing[:20],
            "seq": self.seq,
            "acked_seq": self.acked_seq,
            "playing": playing,
            "assets_on_unit": len(self.sender.unit_has),
        }

    def health(self) -> DeviceHealth:
        now = self.ctx.clock.now_ms()
        alarms = []
        if self.scheduler is None:
            alarms.append(NO_SCHEDULE)
        if self.missing:
            alarms.append(ASSET_MISSING)
        online = self.last_seen_ms is not None and now - self.last_seen_ms <= self.offline_after_ms
        return DeviceHealth(online=online, last_seen_ms=self.last_seen_ms, alarms=tuple(alarms),
                            details=self._status())
