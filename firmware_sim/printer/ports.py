"""The device end of a simulated serial line: the master side of a pseudo-terminal.

``PtyPort.open()`` creates an ``os.openpty()`` pair; the driver opens ``slave_name``
(or the stable ``link`` path, like a udev ``/dev/serial/by-id/...`` link) with pyserial
exactly as it would a USB-serial adapter. ``unplug()`` closes the pair (the driver sees
EIO, as when a cable is pulled); ``replug()`` makes a new pair and re-points ``link``.
The simulator keeps its own slave fd open so the master never sees EIO when the driver
closes and reopens the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from pathlib import Path

logger = logging.getLogger(__name__)


class PortClosed(Exception):
    """The simulated port was unplugged (raised by ``read``/``write``)."""


class PtyPort:
    def __init__(self, *, link: Path | None = None, max_buffer: int = 64 * 1024) -> None:
        self.link = link
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name = ""
        self._buf = bytearray()
        self._ready = asyncio.Event()
        self._max = max_buffer

    @property
    def path(self) -> str:
        """What a driver should open: the stable link if there is one."""
        return str(self.link) if self.link else self.slave_name

    def open(self) -> PtyPort:
        master, slave = os.openpty()
        # Raw mode on the slave before the driver opens it: no echo, no CR/LF mangling.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_name = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.slave_name)
            os.replace(tmp, self.link)  # atomic re-point, as udev does on replug
        asyncio.get_running_loop().add_reader(master, self._on_readable)
        return self

    def _on_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # no slave open at all (cannot happen while we hold ours)
            return
        self._buf += data
        if len(self._buf) > self._max:
            del self._buf[: len(self._buf) - self._max]
        self._ready.set()

    async def read(self) -> bytes:
        while not self._buf:
            if self._master is None:
                raise PortClosed("unplugged")
            self._ready.clear()
            await self._ready.wait()
        data = bytes(self._buf)
        self._buf.clear()
        return data

    async def write(self, data: bytes) -> None:
        if self._master is None:
            raise PortClosed("unplugged")
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                await asyncio.sleep(0.001)  # tty buffer full: let the reader drain it
            except OSError as err:
                raise PortClosed(str(err)) from err
            if self._master is None:
                raise PortClosed("unplugged")

    def unplug(self) -> None:
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        self._buf.clear()
        self._ready.set()

    def replug(self) -> PtyPort:
        self.unplug()
        return self.open()

    def close(self) -> None:
        self.unplug()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
