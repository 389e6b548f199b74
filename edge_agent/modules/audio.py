"""The store's audio schedule from its content manifest (``[audio]``; on by default,
decision 0050).

HQ publishes the chain's audio schedule compiled per store (``cloud.audio``) as the
``schedule`` document of each store's signed content manifest, its recordings as the
manifest's assets of ``doc`` ``schedule``. When the content module applies a manifest,
this module gives every audio unit of the store (drivers with the ``AUDIO_PLAYER``
capability) the assets it lacks, copied from the content cache, then the schedule; the
driver sends them on to the unit over its bus (``drivers/audio/transfer.py``). When
every unit runs the schedule's version and holds its recordings (acknowledged by the
unit), it is reported as the ``schedule`` part of the store's content status, with the
time, so HQ sees when the store plays it.

A unit that comes later (configured by a shadow, restarted with an empty cache) gets it
at the next check, every ``check_s``. A unit that refuses (bad document, full cache) is
counted, logged and named in the part's ``detail``; the others still play.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from prometheus_client import Counter
from pydantic import Field

from edge_agent.drivers.base import DriverError
from edge_agent.drivers.capabilities import AUDIO_PLAYER, AudioPlayer
from edge_agent.kernel.module import Module, ModuleSettings
from edge_agent.metrics import registry_scoped
from edge_agent.modules.content import AppliedContent, Content

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from edge_agent.kernel.module import Kernel
    from edge_agent.kernel.supervisor import Supervisor

logger = logging.getLogger(__name__)

DOCUMENT = "schedule"  # the manifest's document (and its assets' ``doc``)


class AudioSettings(ModuleSettings):
    # Units configured after the manifest applied get the schedule within this long.
    check_s: float = Field(default=5.0, gt=0)
    # While a unit is still receiving its recordings, it is looked at this often.
    transfer_check_s: float = Field(default=0.25, gt=0)


class AudioMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.handed = Counter(
            "storefleet_audio_schedule_handoffs", "Manifest schedules handed to audio units, "
            "by result (applied, refused: the unit's driver refused the document or an "
            "asset, unreadable: an asset missing from the content cache)", ["result"],
            registry=registry)


class Audio(Module):
    name = "audio"
    Settings = AudioSettings
    default_on: ClassVar[bool] = True
    after = ("content",)

    def __init__(self, kernel: Kernel, settings: AudioSettings) -> None:
        super().__init__(kernel, settings)
        content = kernel.module("content")
        self.content = content if isinstance(content, Content) else None
        self.metrics = registry_scoped(kernel.registry, "audio_module", AudioMetrics)
        self._applied: AppliedContent | None = None
        self._wake = asyncio.Event()
        self._problems: dict[str, str] = {}  # unit -> why it does not run the schedule
        self._transferring = False  # a unit runs the schedule, its recordings on the way

    async def start(self, tasks: Supervisor) -> None:
        if self.content is None:
            return  # no manifest: units take schedules by command or shadow only
        self.content.on_applied(self._on_applied)
        tasks.start("audio-content", self._loop)

    def diagnostics(self) -> dict[str, Any]:
        doc = self._document()
        return {"schedule_version": doc.get("version") if doc else None,
                "problems": dict(self._problems)}

    def _on_applied(self, applied: AppliedContent) -> None:
        self._applied = applied
        self._wake.set()

    def _document(self) -> dict[str, Any] | None:
        applied = self._applied
        doc = applied.manifest.documents.get(DOCUMENT) if applied else None
        return doc if isinstance(doc, dict) else None

    async def _loop(self) -> None:
        while True:
            wait_s = (self.settings.transfer_check_s if self._transferring
                      else self.settings.check_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)
            self._wake.clear()
            await self.hand_over()

    async def hand_over(self) -> None:
        """Give every unit that does not run the manifest's schedule its assets and the
        schedule; report the part once all run it."""
        applied, doc = self._applied, self._document()
        if applied is None or doc is None or self.content is None:
            return
        version = doc.get("version")
        units = self.kernel.drivers.find(AUDIO_PLAYER)
        if not units or not isinstance(version, int):
            return  # nothing plays here (yet): nothing to report
        for unit in units:
            current = unit.schedule_version
            if current is not None and current >= version:
                self._problems.pop(unit.device_id, None)
                continue
            try:
                await self._give(unit, applied, doc)
            except (DriverError, OSError) as err:
                self._problems[unit.device_id] = str(err)[:200]
                result = "unreadable" if isinstance(err, OSError) else "refused"
                self.metrics.handed.labels(result=result).inc()
                logger.error("audio unit %s: schedule v%s not taken: %s", unit.device_id,
                             version, err)
            else:
                self._problems.pop(unit.device_id, None)
                self.metrics.handed.labels(result="applied").inc()
        behind = [u.device_id for u in units
                  if u.schedule_version is None or u.schedule_version < version]
        self._transferring = not behind and not all(u.unit_ready for u in units)
        if self._transferring:
            return  # reported once the units hold the recordings
        if not behind:
            self.content.report_part(DOCUMENT, version, applied_ms=self.kernel.clock.now_ms())
        elif self._problems:
            worst = sorted(self._problems.items())[0]
            self.content.report_part(
                DOCUMENT, min((u.schedule_version or 0) for u in units),
                applied_ms=self.kernel.clock.now_ms(),
                detail=f"{len(behind)} unit(s) behind; {worst[0]}: {worst[1]}")

    async def _give(self, unit: AudioPlayer, applied: AppliedContent,
                    doc: dict[str, Any]) -> None:
        for asset in applied.manifest.assets_of(DOCUMENT):
            if not await unit.has_asset(asset.sha256):
                # The content cache verified it (sha256, signature) before the switch.
                data = await asyncio.to_thread(applied.asset_path(asset.sha256).read_bytes)
                await unit.put_asset(data)
        result = await unit.set_schedule(doc)
        logger.info("audio unit %s: schedule v%s from content manifest %d (%s)",
                    unit.device_id, doc.get("version"), applied.manifest.version,
                    "applied" if result.get("applied") else "already running")


MODULE = Audio
