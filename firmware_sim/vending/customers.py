"""Customers at the simulated vending cabinet, one every ``every_s`` seconds.

A customer walks up, taps a card on the cashless reader and presses the key of a door of
the cabinet's planogram (``VendingCabinetSim.customer``). Everything after that is the
real path: the agent's vending driver polls the reader over the serial line, asks for the
vend, unlocks the door, reads it back open and emits the one ``vend`` event of the
session. The customer takes the item and shuts the door.

Some customers are members and tap their member card. MDB cashless level 1 tells the VMC
one thing about a card, its media id (u32, in BEGIN SESSION), so that is what a member
is here: a card whose media id lies in ``MEMBER_CARDS``. The driver reports it as the
``vend`` event's ``media_id``; who the member is stays with whoever issued the card.
Other customers pay with a bank card (a media id outside that range). Every
``short_every``-th card holds less than the price, and the reader denies the vend.

A customer who finds the cabinet busy (the previous session still open) comes back next
turn; one whose session nobody runs (no VMC polling the line) walks away after
``patience_s``. Both are counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from firmware_sim.vending.sim import VendingCabinetSim

logger = logging.getLogger(__name__)

# Member cards are issued as media ids 0x4D000001.. ("M" in the top byte): a convention of
# this simulator, so a vend event's media_id shows whether a member bought.
MEMBER_MEDIA_BASE = 0x4D00_0000
MEMBER_CARDS: tuple[int, ...] = tuple(MEMBER_MEDIA_BASE + n for n in range(1, 9))
# Bank cards: any other media id (kept below the member range).
_BANK_MEDIA = (0x1000_0000, 0x3FFF_FFFF)


def is_member_card(media_id: int) -> bool:
    return media_id in MEMBER_CARDS


@dataclass(frozen=True, slots=True)
class Visit:
    """One customer at the cabinet, as the simulator sent them."""

    door: int
    media_id: int
    funds: int
    outcome: str  # served | walked_away


@dataclass
class CabinetCustomers:
    """Runs customers at ``cabinet`` until ``run``'s stop event is set.

    ``prices`` is the cabinet's planogram, door -> price in minor units (the doors and
    prices the driver is configured with), so every key press names a stocked door.
    """

    cabinet: VendingCabinetSim
    prices: Mapping[int, int]
    every_s: float = 8.0
    member_share: float = 0.4  # customers who tap a member card
    # every Nth card holds less than the price and the vend is denied (0: never); counted
    # rather than drawn, so a short run does not open with a string of denials
    short_every: int = 10
    patience_s: float = 10.0  # how long a customer waits for the reader to answer
    take_s: float = 1.0  # from the door opening to the customer shutting it
    member_cards: Sequence[int] = MEMBER_CARDS
    seed: int = 7
    visits: list[Visit] = field(default_factory=list)
    busy: int = 0  # arrivals that found the cabinet still in the previous session
    # no walk-ups while set (a demo's shopper at the cabinet with a code, alone)
    paused: bool = False

    def __post_init__(self) -> None:
        if not self.prices:
            raise ValueError("a cabinet with no stocked door has nothing to sell")
        if self.every_s <= 0:
            raise ValueError(f"every_s must be positive, not {self.every_s}")
        self._rng = random.Random(self.seed)

    @property
    def walked_away(self) -> int:
        return sum(1 for v in self.visits if v.outcome == "walked_away")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                # a little spread, so customers do not arrive like clockwork
                async with asyncio.timeout(self.every_s * self._rng.uniform(0.7, 1.3)):
                    await stop.wait()
            except TimeoutError:
                await self.one()

    async def one(self) -> Visit | None:
        """One customer: tap, key press, wait for the session to end, take the item."""
        if self.paused:
            return None
        if not self.cabinet.idle:
            self.busy += 1
            return None
        rng = self._rng
        door = rng.choice(sorted(self.prices))
        price = self.prices[door]
        if rng.random() < self.member_share:
            media_id = rng.choice(self.member_cards)
        else:
            media_id = rng.randint(*_BANK_MEDIA)
        arrivals = len(self.visits) + 1
        if self.short_every > 0 and arrivals % self.short_every == 0:
            funds = rng.randint(0, max(price - 1, 0))
        else:
            funds = price + rng.randint(0, 20) * 100  # change left on the card, whole units
        unlocks = len(self.cabinet.unlocks)
        self.cabinet.customer(door, funds, media_id=media_id)
        try:
            async with asyncio.timeout(self.patience_s):
                await self.cabinet.wait_idle()
        except TimeoutError:
            self.cabinet.walk_away()
            logger.info("vending customer walked away: no session on the cabinet in %.0f s "
                        "(is a VMC polling %s?)", self.patience_s, self.cabinet.port.path)
            visit = Visit(door, media_id, funds, "walked_away")
            self.visits.append(visit)
            return visit
        visit = Visit(door, media_id, funds, "served")
        self.visits.append(visit)
        if len(self.cabinet.unlocks) > unlocks:
            try:
                await asyncio.sleep(self.take_s)
            finally:  # stopped meanwhile: the door is still shut, as a customer would
                self.cabinet.close_door(door)
        return visit
