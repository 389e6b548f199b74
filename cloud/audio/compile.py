"""The effective schedule of one store: the chain's, with the overrides that reach the
store applied, as the box's ``protocols.audio.AudioSchedule`` document.

The document covers every day, not only one: dayparts, announcements and spots carry
their weekdays and the holiday dates ride along, so a box that is cut off from HQ for
a week still plays each day right (a one-day document would go stale at midnight).
``day`` drops the holidays before it, and ``day_plan`` says what plays on one date. The
version is the chain schedule's: every store's document changes with it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.audio.errors import AudioError
from cloud.audio.model import AudioScheduleSpec, Override
from cloud.db.models_audio import AudioScheduleVersion
from cloud.db.models_loyalty import StoreRegion
from cloud.db.models_rollouts import StoreGroup, StoreMaintenance
from protocols.audio import AudioSchedule

DEFAULT_TIMEZONE = "UTC"  # a store without a maintenance row (decision 0043)


def _reaches(override: Override, store_id: str | None, regions: set[str],
             groups: set[str]) -> bool:
    return (store_id in override.stores or bool(regions & set(override.regions))
            or bool(groups & set(override.groups)))


def _apply(doc: dict[str, Any], override: Override) -> None:
    if override.duck_db is not None:
        doc["duck_db"] = override.duck_db
    doc["tracks"].update({k: v.model_dump() for k, v in override.tracks.items()})
    doc["zones"].update({k: v.model_dump() for k, v in override.zones.items()})
    if override.dayparts is not None:
        doc["dayparts"] = [p.model_dump() for p in override.dayparts]
    gone = set(override.remove)
    for key, items in (("announcements", override.announcements), ("spots", override.spots)):
        mine = {i.name for i in items}
        doc[key] = [i for i in doc[key] if i["name"] not in gone | mine]
        doc[key] += [i.model_dump() for i in items]
    doc["holidays"] = sorted(set(doc["holidays"]) | set(override.holidays))


def compile_schedule(spec: AudioScheduleSpec, *, version: int, timezone: str = DEFAULT_TIMEZONE,
                     store_id: str | None = None, regions: list[str] | None = None,
                     groups: list[str] | None = None,
                     since: dt.date | None = None) -> dict[str, Any]:
    """The store's ``AudioSchedule`` as JSON; ``AudioError`` 422 when the result is not
    a valid schedule (an override naming a track or zone nobody defines)."""
    doc = spec.model_dump(mode="json", exclude={"overrides"})
    reached = [o for o in spec.overrides
               if _reaches(o, store_id, set(regions or ()), set(groups or ()))]
    for override in sorted(reached, key=lambda o: o.level):  # stable: list order in a level
        _apply(doc, override)
    if since is not None:
        doc["holidays"] = [d for d in doc["holidays"] if d >= since.isoformat()]
    doc.update(version=version, timezone=timezone)
    try:
        # without nulls: in a desired shadow a null deletes its key (RFC 7386)
        return AudioSchedule.model_validate(doc).model_dump(mode="json", exclude_none=True)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "schedule"
        names = ", ".join(o.name for o in reached) or "none"
        raise AudioError(422, f"the schedule of {store_id or 'the chain'} (overrides: "
                         f"{names}) is invalid at {where}: {first['msg']}",
                         reason="invalid_schedule") from err


def check_spec(spec: AudioScheduleSpec) -> None:
    """The chain's schedule alone and with each override alone must compile."""
    compile_schedule(spec, version=1)
    for override in spec.overrides:
        alone = spec.model_copy(update={"overrides": [override]})
        compile_schedule(alone, version=1, store_id=override.stores[0] if override.stores
                         else None, regions=override.regions, groups=override.groups)


def store_context(session: Session, store_id: str) -> tuple[str, list[str], list[str]]:
    """The store's time zone, regions and groups."""
    zone = session.scalar(select(StoreMaintenance.timezone)
                          .where(StoreMaintenance.store_id == store_id))
    regions = list(session.scalars(select(StoreRegion.region)
                                   .where(StoreRegion.store_id == store_id)))
    groups = list(session.scalars(select(StoreGroup.group_id)
                                  .where(StoreGroup.store_id == store_id)))
    return zone or DEFAULT_TIMEZONE, regions, groups


def latest(session: Session) -> AudioScheduleVersion | None:
    return session.scalars(select(AudioScheduleVersion)
                           .order_by(AudioScheduleVersion.version.desc()).limit(1)).first()


def effective_schedule(session: Session, store_id: str, day: dt.date) -> dict[str, Any]:
    """The store's effective schedule (the newest chain version) from ``day`` on."""
    row = latest(session)
    if row is None:
        raise AudioError(404, "no audio schedule has been published", reason="nothing_published")
    spec = AudioScheduleSpec.model_validate(row.spec)
    timezone, regions, groups = store_context(session, store_id)
    return compile_schedule(spec, version=row.version, timezone=timezone, store_id=store_id,
                            regions=regions, groups=groups, since=day)


def day_plan(doc: dict[str, Any], day: dt.date) -> dict[str, Any]:
    """What the schedule plays on one local date: names of dayparts, announcements, spots."""
    holiday = day.isoformat() in doc["holidays"]

    def plays(item: dict[str, Any]) -> bool:
        days = item.get("days")
        return (bool(item.get("holiday")) == holiday
                and (days is None or day.isoweekday() in days))

    return {"day": day.isoformat(), "holiday": holiday,
            **{key: [i["name"] for i in doc[key] if plays(i)]
               for key in ("dayparts", "announcements", "spots")}}
