"""How bytes and messages reach a driver, shared by every family (decision 0033):
byte links to serial and TCP devices, their options and metrics, and the flood guard.

The narrowest interface (httpx-transport style): ``read()``, ``write()``, ``close()``.

* ``SerialLink`` opens the port with pyserial (which configures termios: baud, 8N1,
  raw mode) and then drives the file descriptor from the event loop with
  ``loop.add_reader``: pyserial keeps the fd ``O_NONBLOCK``, so reads and writes never
  block the loop and no thread per port is needed. Works on a real UART, a USB CDC
  port and a pseudo-terminal (the simulators' ``os.openpty()`` pairs).
* ``TcpLink`` is an asyncio stream (ESC/POS printers on TCP 9100).

Received bytes wait in a bounded buffer (``max_buffer``): a device that floods us
has its oldest bytes dropped and counted, never grows memory.

Errors (all ``DriverError`` subclasses, so the supervisor restarts the driver):
``LinkClosed`` when the device went away (EIO on a pty whose other end closed, a TCP
reset, EOF) and ``LinkTimeout`` when nothing arrives in time.

Options: a serial family's options model extends ``SerialOptions`` (``port``,
``baudrate``); one that also takes TCP extends ``LinkOptions`` (``port`` or ``host`` +
``tcp_port``); ``open_link`` opens what they name. Reconnecting is the supervisor's
job: a driver opens its link in ``run()`` and closes it in ``finally``, and the
supervisor awaits that end before a replacement opens the same port.

``TokenBucket`` cuts a device (or a cart, a bus sender) that floods us to a rate.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from typing import Protocol

import serial
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field, model_validator

from edge_agent.drivers.base import DriverError, DriverOptions
from edge_agent.metrics import registry_scoped
from protocols.clock import Clock

logger = logging.getLogger(__name__)

DEFAULT_MAX_BUFFER = 64 * 1024  # far above any reply we wait for, small enough to not matter


class LinkClosed(DriverError):
    """The device end of the link went away."""


class LinkTimeout(DriverError):
    """Nothing (or not enough) arrived in time."""


class ByteLink(Protocol):
    dropped_bytes: int

    async def read(self, *, wait_s: float | None = None) -> bytes:
        """Whatever has arrived (at least one byte); ``LinkTimeout`` / ``LinkClosed``."""
        ...

    async def write(self, data: bytes) -> None: ...

    def discard_input(self) -> int:
        """Drop buffered input (before a query whose answer must not be stale)."""
        ...

    async def close(self) -> None: ...


class _Buffered:
    """Receive buffer shared by both links: bounded, with a wake-up event."""

    def __init__(self, device_id: str, max_buffer: int) -> None:
        self.device_id = device_id
        self._buf = bytearray()
        self._ready = asyncio.Event()
        self._closed: str | None = None
        self._max = max_buffer
        self.dropped_bytes = 0

    def _push(self, data: bytes) -> None:
        self._buf += data
        excess = len(self._buf) - self._max
        if excess > 0:  # flood: keep the newest bytes, they are the ones a reply is in
            del self._buf[:excess]
            self.dropped_bytes += excess
        self._ready.set()

    def _mark_closed(self, why: str) -> None:
        if self._closed is None:
            self._closed = why
        self._ready.set()

    async def read(self, *, wait_s: float | None = None) -> bytes:
        async def wait() -> None:
            while not self._buf and self._closed is None:
                self._ready.clear()
                await self._ready.wait()

        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
            # cancellation that races with completion (the task then never stops).
            async with asyncio.timeout(wait_s):
                await wait()
        except TimeoutError as err:
            raise LinkTimeout(self.device_id, f"no data in {wait_s} s") from err
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            return data
        raise LinkClosed(self.device_id, self._closed or "closed")

    def discard_input(self) -> int:
        n = len(self._buf)
        self._buf.clear()
        return n


class SerialLink(_Buffered):
    def __init__(self, device_id: str, port: str, *, baudrate: int = 9600,
                 max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        super().__init__(device_id, max_buffer)
        self.port = port
        self._baudrate = baudrate
        self._serial: serial.Serial | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> SerialLink:
        try:
            # Opening a tty is a quick syscall plus termios setup (no waiting on the
            # device), so it is done on the loop thread; timeout=0 keeps it non-blocking.
            ser = serial.Serial(self.port, self._baudrate, timeout=0, write_timeout=0,
                                exclusive=True)
        except (serial.SerialException, OSError, ValueError) as err:
            raise LinkClosed(self.device_id, f"cannot open {self.port}: {err}") from err
        self._serial = ser
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(ser.fileno(), self._on_readable)
        return self

    def _on_readable(self) -> None:
        assert self._serial is not None
        try:
            data = os.read(self._serial.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as err:  # EIO: the other end of a pty closed / USB unplugged
            self._stop_reading()
            self._mark_closed(f"read failed: {os.strerror(err.errno or errno.EIO)}")
            return
        if not data:
            self._stop_reading()
            self._mark_closed("end of file")
            return
        self._push(data)

    def _stop_reading(self) -> None:
        if self._serial is not None and self._loop is not None and self._serial.is_open:
            self._loop.remove_reader(self._serial.fileno())

    async def write(self, data: bytes) -> None:
        if self._serial is None or self._closed is not None:
            raise LinkClosed(self.device_id, self._closed or "not open")
        fd = self._serial.fileno()
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                await self._writable(fd)
            except OSError as err:
                self._mark_closed(f"write failed: {err}")
                raise LinkClosed(self.device_id, f"write failed: {err}") from err

    async def _writable(self, fd: int) -> None:
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        self._loop.add_writer(fd, ready)
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
            # cancellation that races with completion (the task then never stops).
            async with asyncio.timeout(2.0):  # a tty that cannot drain in 2 s is stuck
                await fut
        except TimeoutError as err:
            raise LinkTimeout(self.device_id, "serial write stalled") from err
        finally:
            self._loop.remove_writer(fd)

    async def close(self) -> None:
        self._stop_reading()
        self._mark_closed("closed by us")
        if self._serial is not None:
            self._serial.close()
            self._serial = None


class TcpLink(_Buffered):
    def __init__(self, device_id: str, host: str, port: int, *,
                 max_buffer: int = DEFAULT_MAX_BUFFER, connect_timeout: float = 3.0) -> None:
        super().__init__(device_id, max_buffer)
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None

    async def open(self) -> TcpLink:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self._connect_timeout)
        except (OSError, TimeoutError) as err:
            raise LinkClosed(self.device_id, f"cannot connect {self.host}:{self.port}: {err}") \
                from err
        self._writer = writer
        self._pump = asyncio.create_task(self._read_loop(reader),
                                         name=f"tcplink-{self.device_id}")
        return self

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(4096):
                self._push(data)
            self._mark_closed("connection closed by device")
        except OSError as err:
            self._mark_closed(f"connection lost: {err}")

    async def write(self, data: bytes) -> None:
        if self._writer is None or self._closed is not None:
            raise LinkClosed(self.device_id, self._closed or "not open")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as err:
            self._mark_closed(f"write failed: {err}")
            raise LinkClosed(self.device_id, f"write failed: {err}") from err

    async def close(self) -> None:
        self._mark_closed("closed by us")
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass  # already reset by the device; nothing left to release
            self._writer = None


# Above any UART or USB-CDC rate a store device uses; bounds a typo such as 96000000.
MAX_BAUDRATE = 4_000_000


class SerialOptions(DriverOptions):
    """A device on a serial line (a real UART, USB CDC, or a simulator's pty)."""

    port: str = Field(min_length=1, description="serial device path, e.g. /dev/ttyUSB0")
    baudrate: int = Field(9600, gt=0, le=MAX_BAUDRATE)


class LinkOptions(DriverOptions):
    """A device on serial (``port`` + ``baudrate``) or TCP (``host`` + ``tcp_port``)."""

    port: str | None = Field(None, min_length=1)
    baudrate: int = Field(9600, gt=0, le=MAX_BAUDRATE)
    host: str | None = Field(None, min_length=1)
    tcp_port: int = Field(9100, gt=0, le=65535)  # 9100: the raw-printing port (JetDirect)

    @model_validator(mode="after")
    def _one_link(self) -> LinkOptions:
        if not (self.port or self.host):
            raise ValueError("needs 'port' (serial) or 'host' (TCP)")
        return self


async def open_link(device_id: str, options: LinkOptions | SerialOptions, *,
                    max_buffer: int = DEFAULT_MAX_BUFFER) -> SerialLink | TcpLink:
    """Open the link a device's options name: serial when ``port`` is set, else TCP."""
    if options.port:
        return await SerialLink(device_id, options.port, baudrate=options.baudrate,
                                max_buffer=max_buffer).open()
    assert isinstance(options, LinkOptions) and options.host  # the model's validator
    return await TcpLink(device_id, options.host, options.tcp_port,
                         max_buffer=max_buffer).open()


class LinkMetrics:
    """Counters shared by the serial/TCP drivers; one set per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected = Counter(
            "storefleet_serial_frames_rejected", "frames or bytes a driver threw away",
            ["device", "reason"], registry=registry)
        self.timeouts = Counter(
            "storefleet_serial_timeouts", "requests that got no valid reply in time",
            ["device"], registry=registry)
        self.dropped = Counter(
            "storefleet_link_dropped_bytes", "received bytes dropped by a full buffer (flood)",
            ["device"], registry=registry)


def link_metrics(registry: CollectorRegistry) -> LinkMetrics:
    return registry_scoped(registry, "link", LinkMetrics)


class TokenBucket:
    """Flood guard: ``rate`` messages/s sustained, ``burst`` at once; a sender over it is
    cut to the rate, not believed. Timed on the injected clock."""

    def __init__(self, *, rate: float, burst: float, clock: Clock) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock.monotonic()

    def take(self) -> bool:
        now = self._clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
