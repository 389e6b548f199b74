"""Join by QR: a shopper who scans an assistant's join code becomes a member of that
store (home store) recruited by that assistant.

The member app's backend posts the code's text with a ``join_id`` it chose for this
join: the same ``join_id`` again (a retry after a lost answer) returns the same member
and writes nothing; another join with it is a ``Conflict``. The code is checked first
(``protocols.joincode``: form, mac, expiry), then the assistant it names (known at that
store, not retired): each refusal is a ``JoinCodeRefused`` with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.models_members import MemberHomeStore
from cloud.db.models_staff import MemberBirthday, MemberRecruit, StaffAssistant
from cloud.loyalty.errors import Conflict
from cloud.loyalty.members import create_member
from cloud.staff.errors import JoinCodeRefused
from protocols import joincode

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Joined:
    member_id: str
    store_id: str
    assistant_id: str
    joined_ms: int
    replayed: bool


def check_code(text: str, *, key: bytes, now_ms: int) -> joincode.JoinCode:
    try:
        return joincode.verify(text, key=key, now_ms=now_ms)
    except joincode.JoinRefused as err:
        raise JoinCodeRefused(err.reason, err.detail) from err


def join(session: Session, *, code_text: str, key: bytes, join_id: str, now_ms: int,
         hash_key: SecretStr | None, phone: str | None = None,
         birthday: int | None = None) -> Joined:
    """Enrol the shopper at the code's store, recruited by its assistant (idempotent by
    ``join_id``). ``birthday``: month * 100 + day, or None."""
    code = check_code(code_text, key=key, now_ms=now_ms)
    done = session.scalar(select(MemberRecruit).where(MemberRecruit.join_id == join_id))
    if done is not None:
        if (done.store_id, done.assistant_id) != (code.store_id, code.assistant_id):
            raise Conflict(f"join_id {join_id!r} was used for another join")
        return Joined(member_id=done.member_id, store_id=done.store_id,
                      assistant_id=done.assistant_id, joined_ms=done.joined_ms,
                      replayed=True)
    assistant = session.get(StaffAssistant, code.assistant_id)
    if assistant is None or assistant.store_id != code.store_id:
        raise JoinCodeRefused("unknown_assistant", f"no assistant {code.assistant_id} at "
                              f"store {code.store_id}")
    if not assistant.active:
        raise JoinCodeRefused("retired", f"assistant {code.assistant_id} no longer works "
                              f"at store {code.store_id}")
    member = create_member(session, now_ms=now_ms, key=hash_key, phone=phone)
    session.add_all([
        MemberHomeStore(member_id=member.member_id, store_id=code.store_id, since_ms=now_ms),
        MemberRecruit(member_id=member.member_id, store_id=code.store_id,
                      assistant_id=code.assistant_id, join_id=join_id, joined_ms=now_ms)])
    if birthday is not None:
        session.add(MemberBirthday(member_id=member.member_id, month_day=birthday))
    session.flush()  # the unique join_id is checked here, inside the caller's transaction
    logger.info("store %s: member %s joined, recruited by %s", code.store_id,
                member.member_id, code.assistant_id)
    return Joined(member_id=member.member_id, store_id=code.store_id,
                  assistant_id=code.assistant_id, joined_ms=now_ms, replayed=False)
