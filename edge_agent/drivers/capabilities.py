"""What the rest of the agent uses a driver for, as typed protocols (decision 0033).

A driver class declares a capability by inheriting its protocol
(``class EslDriver(Driver, LabelSink)``); the agent finds drivers by capability,

    for sink in supervisor.find(LABEL_SINK): sink.apply_price_book(book)

never by family name, ``hasattr`` or ``getattr``. A test double that has the methods
is found too (the protocols are runtime-checkable).

Each protocol comes with a ``Capability`` token because mypy refuses a protocol class
where ``type[T]`` is expected; the token carries the protocol's static type to
``find``'s result.

==================  =====================================  ==========================
capability          used by                                provided by (family)
==================  =====================================  ==========================
``RECEIPT_PRINTER`` the till, order tickets (pos)           printer (cash drawer on DK)
``SCANNER``         the till's scans (pos)                  scanner
``CUSTOMER_DISPLAY`` the till's line display (pos)          display
``LABEL_SINK``      shelf sync (pos/shelf.py)               esl
``CART_FLEET``      in-aisle: sessions, scans, screens      cart
``BUSY``            rollouts: defer while busy (0043)       vending, esl, cart
``LABEL_COUNTER``   the store's label counts (content        esl
                    status, modules/shelf.py, 0050)
``AUDIO_PLAYER``    the store's schedule from content       audio
                    (modules/audio.py, 0050)
``CODE_CABINET``    pickup and member codes at a cabinet    vending
                    (modules/cabinets.py, 0066)
==================  =====================================  ==========================
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from edge_agent.drivers.base import DeviceHealth

if TYPE_CHECKING:  # the families import this module: no import cycle at run time
    from edge_agent.drivers.cart.driver import ScanSubscription, ScreenResult
    from edge_agent.drivers.cart.state import Session
    from edge_agent.drivers.printer.drawer import CashDrawer
    from edge_agent.drivers.vending.desk import CabinetDesk
    from protocols.aim import Scan
    from protocols.esl import PriceBook

T = TypeVar("T")


@runtime_checkable
class ReceiptPrinter(Protocol):
    """Prints rendered ESC/POS jobs; kicks the cash drawer on its DK port."""

    drawer: CashDrawer | None

    async def print_bytes(self, data: bytes) -> None: ...

    async def kick_drawer(self) -> None: ...

    def health(self) -> DeviceHealth: ...


@runtime_checkable
class Scanner(Protocol):
    """Barcode scans as an async iterator (one bounded queue per reader)."""

    def scans(self) -> AsyncIterator[Scan]: ...

    def health(self) -> DeviceHealth: ...


@runtime_checkable
class CustomerDisplay(Protocol):
    """Two lines of text facing the customer."""

    async def show(self, line1: str, line2: str = "") -> None: ...

    def health(self) -> DeviceHealth: ...


@runtime_checkable
class LabelSink(Protocol):
    """E-shelf labels that converge to a price book."""

    @property
    def device_id(self) -> str: ...

    def apply_price_book(self, book: PriceBook) -> dict[str, Any]: ...


@runtime_checkable
class ScreenSink(Protocol):
    """Messages on a cart's native screen, acknowledged by the cart."""

    async def send_screen(self, cart_id: str, *, title: str, body: str = "",
                          kind: str = "info", timeout_s: float | None = None
                          ) -> ScreenResult: ...


@runtime_checkable
class CartFleet(ScreenSink, Protocol):
    """The store's carts: their sessions, their scan reports and their screens."""

    def session_of(self, cart_id: str) -> Session | None: ...

    def subscribe_scans(self, *, maxsize: int = 256) -> ScanSubscription: ...


@runtime_checkable
class BusyReporter(Protocol):
    """A device that can be in the middle of something an install must not cut (a vend
    session, a price book reaching the shelf, a firmware transfer): ``busy_reason()``
    says what, in a few words, or None when it is free (decision 0043)."""

    @property
    def device_id(self) -> str: ...

    def busy_reason(self) -> str | None: ...


@runtime_checkable
class LabelCounter(Protocol):
    """E-shelf labels by state: ``(current, pending, stale)``: showing what they should,
    sent and not yet confirmed, not confirmed within the driver's stale bound."""

    def label_counts(self) -> tuple[int, int, int]: ...


@runtime_checkable
class AudioPlayer(Protocol):
    """An audio unit that plays a schedule of cached assets (decision 0048)."""

    @property
    def device_id(self) -> str: ...

    @property
    def schedule_version(self) -> int | None: ...

    @property
    def unit_ready(self) -> bool: ...  # the unit holds every recording it plays

    async def has_asset(self, sha256: str) -> bool: ...

    async def put_asset(self, data: bytes) -> str: ...

    async def set_schedule(self, document: Mapping[str, Any]) -> dict[str, Any]: ...


@runtime_checkable
class CodeCabinet(Protocol):
    """A cabinet where a pickup or member code can be entered: the box's desk that
    answers the codes is attached to it (decision 0066)."""

    @property
    def device_id(self) -> str: ...

    def attach_desk(self, desk: CabinetDesk | None) -> None: ...


class Capability(Generic[T]):
    """A capability to look drivers up by (``DriverSupervisor.find``)."""

    def __init__(self, name: str, protocol: type[Any]) -> None:
        self.name = name
        self.protocol = protocol

    def provided_by(self, driver: object) -> bool:
        return isinstance(driver, self.protocol)

    def __repr__(self) -> str:
        return f"Capability({self.name})"


RECEIPT_PRINTER = Capability[ReceiptPrinter]("receipt_printer", ReceiptPrinter)
SCANNER = Capability[Scanner]("scanner", Scanner)
CUSTOMER_DISPLAY = Capability[CustomerDisplay]("customer_display", CustomerDisplay)
LABEL_SINK = Capability[LabelSink]("label_sink", LabelSink)
SCREEN_SINK = Capability[ScreenSink]("screen_sink", ScreenSink)
CART_FLEET = Capability[CartFleet]("cart_fleet", CartFleet)
BUSY = Capability[BusyReporter]("busy", BusyReporter)
AUDIO_PLAYER = Capability[AudioPlayer]("audio_player", AudioPlayer)
LABEL_COUNTER = Capability[LabelCounter]("label_counter", LabelCounter)
CODE_CABINET = Capability[CodeCabinet]("code_cabinet", CodeCabinet)

CAPABILITIES: tuple[Capability[Any], ...] = (
    RECEIPT_PRINTER, SCANNER, CUSTOMER_DISPLAY, LABEL_SINK, SCREEN_SINK, CART_FLEET, BUSY,
    AUDIO_PLAYER, LABEL_COUNTER, CODE_CABINET)


def capabilities_of(driver: object) -> list[str]:
    """The names of the capabilities a driver provides (diagnostics, tests)."""
    return [c.name for c in CAPABILITIES if c.provided_by(driver)]
