"""Which stores, and which device in each, a rollout goes to (decision 0043).

    chosen = resolve(session, plan, artifact=row)   # Chosen(stores, devices, device)

A plan selects stores by any union of explicit ``stores``, ``regions`` (HQ's
``store_regions``) and ``groups`` (``store_groups``); firmware may instead, or as well,
name device ``models``: then the stores are those (of the union, or of the whole fleet
when no store, region or group is named) that have a device of that family and model,
and each target carries that device's id. The selection is resolved once, when the
rollout is created, and recorded in its targets: a store put in a region afterwards is
not added to a running rollout.

Explicit stores keep their order (the first is the canary); stores reached through a
region, group or model follow, sorted. A selection that reaches no store, a region or
group with no store, a model the artifact is not for, a device and a model at once, or
a store with two devices of the model is refused (422, ``RolloutError``) rather than
guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.models import Device
from cloud.db.models_artifacts import Artifact
from cloud.db.models_loyalty import StoreRegion
from cloud.db.models_rollouts import StoreGroup
from cloud.rollouts.errors import RolloutError

MAX_STORES = 10_000  # targets of one rollout, however selected
PER_TARGET = "*"  # the rollout's device when each target names its own (model targeting)


@dataclass(frozen=True, slots=True)
class Selection:
    """What a plan asks for (``RolloutPlan`` carries these fields)."""

    stores: list[str]
    regions: list[str]
    groups: list[str]
    models: list[str]
    device: str | None


@dataclass(frozen=True, slots=True)
class Chosen:
    stores: list[str]  # in wave order
    devices: dict[str, str]  # store -> the device its offer names
    device: str  # the rollout's: "agent", one device id, or PER_TARGET


def _contradiction(detail: str) -> RolloutError:
    return RolloutError(422, detail, reason="contradictory_selection")


def _device_for(sel: Selection, artifact: Artifact) -> str | None:
    """The one device every target gets, or None when ``models`` picks one per store."""
    if artifact.kind == "asset":  # no installer takes it; content has its own path
        raise RolloutError(422, "a content asset reaches stores in their content manifest "
                           "(POST /api/v1/content/publish, decision 0046), not by rollout",
                           reason="wrong_target")
    if sel.models:
        if artifact.kind != "firmware":
            raise _contradiction(f"a {artifact.kind} artifact cannot target device models; "
                                 "models select firmware targets")
        if sel.device is not None:
            raise _contradiction(f"give a device ({sel.device!r}) or models, not both")
        return None
    device = sel.device or "agent"
    # firmware goes to a device; the agent and its models (decision 0042) to the agent
    if (device == "agent") != (artifact.kind != "firmware"):
        raise RolloutError(422, f"artifact of kind {artifact.kind} cannot go to {device!r}",
                           reason="wrong_target")
    return device


def _union(session: Session, sel: Selection) -> list[str]:
    ordered = list(sel.stores)
    reached: set[str] = set()
    for name, column, members in (("region", StoreRegion.region, StoreRegion.store_id),
                                  ("group", StoreGroup.group_id, StoreGroup.store_id)):
        for key in sel.regions if name == "region" else sel.groups:
            found = set(session.scalars(select(members).where(column == key)))
            if not found:
                raise RolloutError(422, f"{name} {key!r} has no stores",
                                   reason="empty_selection")
            reached |= found
    return ordered + sorted(reached - set(ordered))


def stores_of(session: Session, *, stores: list[str], regions: list[str],
              groups: list[str]) -> list[str]:
    """The union of explicit stores, regions and groups, in the order described above
    (content publishing selects stores the same way, decision 0046)."""
    return _union(session, Selection(stores=stores, regions=regions, groups=groups,
                                     models=[], device=None))


def _by_model(session: Session, sel: Selection, artifact: Artifact,
              union: list[str]) -> tuple[list[str], dict[str, str]]:
    family, _, model = artifact.target.removeprefix("firmware:").partition("/")
    wrong = sorted(set(sel.models) - {model})
    if wrong:
        raise _contradiction(f"artifact {artifact.target} is for model {model!r}, not "
                             f"{', '.join(map(repr, wrong))}")
    stmt = (select(Device.store_id, Device.device_id)
            .where(Device.kind == family, Device.model == model)
            .order_by(Device.store_id, Device.device_id))
    if union:
        stmt = stmt.where(Device.store_id.in_(union))
    per_store: dict[str, list[str]] = {}
    for store_id, device_id in session.execute(stmt):
        per_store.setdefault(store_id, []).append(device_id)
    for store_id, devices in per_store.items():
        if len(devices) > 1:
            raise _contradiction(f"store {store_id} has {len(devices)} {family}/{model} "
                                 f"devices ({', '.join(devices)}): target one by device")
    stores = [s for s in union if s in per_store] if union else sorted(per_store)
    return stores, {s: per_store[s][0] for s in stores}


def resolve(session: Session, sel: Selection, *, artifact: Artifact) -> Chosen:
    device = _device_for(sel, artifact)
    union = _union(session, sel)
    if device is None:
        stores, devices = _by_model(session, sel, artifact, union)
        where = f" among {len(union)} selected store(s)" if union else ""
        if not stores:
            raise RolloutError(422, f"no store has a {artifact.target.removeprefix('firmware:')}"
                               f" device{where}", reason="empty_selection")
    else:
        stores, devices = union, dict.fromkeys(union, device)
        if not stores:
            raise RolloutError(422, "the selection reaches no store: give stores, regions, "
                               "groups or (firmware) models", reason="empty_selection")
    if len(stores) > MAX_STORES:
        raise RolloutError(422, f"the selection reaches {len(stores)} stores, at most "
                           f"{MAX_STORES} per rollout", reason="too_many_stores")
    return Chosen(stores=stores, devices=devices,
                  device=device if device is not None else PER_TARGET)
