"""Cashless vend session as a pure state machine, modelled on MDB cashless level 1.

    IDLE --begin(funds)--> SESSION --request(price, item)--> REQUESTED
    REQUESTED --approved(amount)--> VENDING --success / failure--> COMPLETING
    REQUESTED --denied--> COMPLETING
    SESSION | REQUESTED --cancel--> COMPLETING
    COMPLETING --end--> IDLE

``transition(session, event)`` returns the next ``Session`` or raises
``SequenceError`` for an event that is out of sequence in the current state (an
out-of-order reply from the reader, a second approval, ...). A session that reached a
vend outcome (``success``, ``failure``, ``denied``) carries it in ``outcome``; the
driver emits exactly one ``vend`` event per such session, with ``vend_event_id``.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, replace

from protocols.errors import ProtocolError

# Namespace for vend event ids: uuid5(namespace, store/device/session) is the same
# string every time it is computed, so a retried emit is stored once by the outbox.
VEND_NAMESPACE = uuid.UUID("6d3f6c1e-2a55-5b8e-9a43-7f1e0c9b5a10")


class State(enum.Enum):
    IDLE = "idle"
    SESSION = "session"  # funds known, waiting for a selection
    REQUESTED = "requested"  # vend request sent, waiting for approve/deny
    VENDING = "vending"  # approved, dispensing
    COMPLETING = "completing"  # session complete sent, waiting for end session


class SequenceError(ProtocolError):
    def __init__(self, state: State, event: str) -> None:
        super().__init__(f"{event} is out of sequence in state {state.value}")
        self.state = state
        self.event = event
        self.reason = "out_of_sequence"


@dataclass(frozen=True, slots=True)
class Begin:
    session_id: str
    funds: int
    media_id: int = 0


@dataclass(frozen=True, slots=True)
class Request:
    price: int
    item: int
    door: int


@dataclass(frozen=True, slots=True)
class Approved:
    amount: int


@dataclass(frozen=True, slots=True)
class Denied:
    pass


@dataclass(frozen=True, slots=True)
class Dispensed:
    success: bool


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


@dataclass(frozen=True, slots=True)
class End:
    pass


Event = Begin | Request | Approved | Denied | Dispensed | Cancel | End


@dataclass(frozen=True, slots=True)
class Session:
    state: State = State.IDLE
    session_id: str | None = None
    funds: int = 0
    media_id: int = 0
    price: int = 0
    item: int = 0
    door: int = 0
    approved_amount: int = 0
    outcome: str | None = None  # success | failure | denied | cancelled

    @property
    def vend_settled(self) -> bool:
        """True once the vend has an outcome a ``vend`` event must report."""
        return self.outcome in {"success", "failure", "denied"}


def transition(session: Session, event: Event) -> Session:
    s = session.state
    match event:
        case Begin() if s is State.IDLE:
            return Session(State.SESSION, event.session_id, event.funds, event.media_id)
        case Request() if s is State.SESSION:
            if event.price < 0:
                raise SequenceError(s, "negative price")
            return replace(session, state=State.REQUESTED, price=event.price, item=event.item,
                           door=event.door)
        case Approved() if s is State.REQUESTED:
            return replace(session, state=State.VENDING, approved_amount=event.amount)
        case Denied() if s is State.REQUESTED:
            return replace(session, state=State.COMPLETING, outcome="denied")
        case Dispensed() if s is State.VENDING:
            return replace(session, state=State.COMPLETING,
                           outcome="success" if event.success else "failure")
        case Cancel() if s in (State.SESSION, State.REQUESTED):
            return replace(session, state=State.COMPLETING, outcome="cancelled")
        case End() if s is not State.IDLE:
            # The reader may end a session on its own (card removed, timeout); a vend
            # that was approved but not yet settled is then a failure.
            outcome = session.outcome or ("failure" if s is State.VENDING else "cancelled")
            return replace(session, state=State.IDLE, outcome=outcome)
    raise SequenceError(s, type(event).__name__)


def vend_event_id(store_id: str, device_id: str, session_id: str) -> str:
    return str(uuid.uuid5(VEND_NAMESPACE, f"{store_id}/{device_id}/{session_id}"))


def vend_event_data(session: Session, *, device_id: str, item_sku: str | None) -> dict[str, object]:
    """The ``vend`` event payload (money in minor units)."""
    return {
        "session_id": session.session_id,
        "cabinet": device_id,
        "door": session.door,
        "item": session.item,
        "sku": item_sku,
        "price": session.price,
        "amount": session.approved_amount if session.outcome == "success" else 0,
        "outcome": session.outcome,
        "media_id": session.media_id,
    }
