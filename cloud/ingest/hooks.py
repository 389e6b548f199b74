"""Post-commit event hooks: business logic that follows stored events.

    hooks = PostCommitHooks(registry=registry)
    hooks.register("loyalty", {"sale", "refund"}, handle)   # handle(session, event, now_ms)
    IngestWorker(settings, registry=registry, hooks=hooks)

After a batch's events are committed, each hook runs once per event of its kinds, in
its own transaction. Hooks see every event of the batch, duplicates included: a crash
between the event commit and a hook commit leaves the message unacknowledged, the
broker redelivers it, the event is then a duplicate and the hook runs again. So every
hook must be idempotent by store and event id (an id is unique within its store only,
decision 0026: keys such as ``earn:<store>/<event id>``, built with ``event_key``), and
it is what makes "issued exactly once" hold.

Failures: a database that is down (``OperationalError``) propagates, so nothing is
acknowledged and the batch comes back; anything else (bad payload, a bug) is logged,
counted in ``storefleet_ingest_hook_errors_total{hook}`` and skipped, so one poison
event cannot stop the stream (docs/architecture.md#bad-input-is-counted-never-fatal).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from protocols.messages import Event

logger = logging.getLogger(__name__)

EventHook = Callable[[Session, Event, int], None]


def event_key(store_id: str, event_id: str) -> str:
    """One string naming an event fleet-wide: ``<store>/<event id>`` ('/' is in no id)."""
    return f"{store_id}/{event_id}"


@dataclass(frozen=True, slots=True)
class _Hook:
    name: str
    kinds: frozenset[str]
    fn: EventHook


class PostCommitHooks:
    def __init__(self, *, registry: CollectorRegistry) -> None:
        self._hooks: list[_Hook] = []
        self.errors = Counter(
            "storefleet_ingest_hook_errors", "Events a post-commit hook failed on (skipped)",
            ["hook"], registry=registry,
        )

    def register(self, name: str, kinds: Iterable[str], fn: EventHook) -> None:
        self._hooks.append(_Hook(name, frozenset(kinds), fn))

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def run(self, sessions: sessionmaker[Session], events: Iterable[Event], *,
            now_ms: int) -> None:
        for event in events:
            for hook in self._hooks:
                if event.kind in hook.kinds:
                    self._run_one(sessions, hook, event, now_ms=now_ms)

    def _run_one(self, sessions: sessionmaker[Session], hook: _Hook, event: Event, *,
                 now_ms: int) -> None:
        # Two tries: an IntegrityError is most likely another worker applying the same
        # redelivered event at the same moment; the second try then finds its work done.
        for attempt in (1, 2):
            try:
                with sessions.begin() as session:
                    hook.fn(session, event, now_ms)
                return
            except sa_exc.OperationalError:
                raise  # the database is unavailable: do not acknowledge, retry later
            except sa_exc.IntegrityError as err:
                if attempt == 1:
                    continue
                self._failed(hook, event, err)
            except Exception as err:  # a bad payload or a bug: count it, keep the stream
                self._failed(hook, event, err)
                return

    def _failed(self, hook: _Hook, event: Event, err: Exception) -> None:
        self.errors.labels(hook=hook.name).inc()
        logger.exception("hook %s failed on %s event %s of store %s: %s", hook.name,
                         event.kind, event.id, event.store_id, err)
