"""Where frames come from: JPEG snapshots of carts, and ``cv2.VideoCapture`` sources.

A ``Frame`` carries either decoded pixels (from a capture) or the JPEG bytes of a
snapshot; snapshots are decoded by the classifier's worker thread, so a snapshot that is
dropped under load never costs a decode and a slow decode never blocks the event loop.

``decode_jpeg`` is strict and never crashes on garbage: it checks the start and end
markers and the declared size (a 60000x60000 header would make OpenCV allocate 10 GB)
before OpenCV touches the bytes, and converts every failure to ``FrameError``.

``VideoSource`` wraps ``cv2.VideoCapture`` (camera index, RTSP/HTTP stream or file).
``CartSnapshots`` subscribes to ``store/cart/+/up/snapshot`` through the driver context
and turns each valid message into a ``Frame`` for a sink (the classifier's ``submit``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.drivers.base import DriverContext
from edge_agent.inference.vision.errors import FrameError, SourceError
from edge_agent.inference.vision.metrics import VisionMetrics
from protocols.cart import CART_KIND
from protocols.clock import Clock
from protocols.errors import DecodeError
from protocols.vision import JPEG_SOI, SNAPSHOT, SNAPSHOT_MAX_JPEG, decode_snapshot

logger = logging.getLogger(__name__)

JPEG_EOI = b"\xff\xd9"
# 4096 x 4096 = 16.7 Mpx: more than any cart or shelf camera sends; a larger declared
# size is a broken or hostile header, refused before OpenCV allocates for it.
MAX_PIXELS = 4096 * 4096
# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) are not SOFs.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xDA)) | {0x01}  # RSTn, SOI, EOI, TEM: no length


@dataclass(frozen=True, slots=True)
class Frame:
    source: str  # cart id or camera id
    ts_ms: int
    image: np.ndarray | None = None  # decoded BGR pixels, or
    jpeg: bytes | None = None  # the JPEG still to decode
    snapshot_id: str | None = None
    session_id: str | None = None

    def pixels(self) -> np.ndarray:
        """The BGR image, decoding the JPEG if needed (raises ``FrameError``)."""
        if self.image is not None:
            return self.image
        if self.jpeg is None:
            raise FrameError("empty", "frame has neither pixels nor JPEG bytes")
        return decode_jpeg(self.jpeg)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the first start-of-frame segment (raises ``FrameError``)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise FrameError("bad_jpeg", f"no marker at offset {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF:
            if i + 9 > len(data):
                break
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        if length < 2:
            raise FrameError("bad_jpeg", f"segment length {length} at offset {i}")
        i += 2 + length
    raise FrameError("bad_jpeg", "no start-of-frame segment")


def decode_jpeg(data: bytes, *, max_bytes: int = SNAPSHOT_MAX_JPEG) -> np.ndarray:
    """Decode a JPEG to BGR uint8, or raise ``FrameError`` - never crash on garbage."""
    if not data:
        raise FrameError("empty", "no bytes")
    if len(data) > max_bytes:
        raise FrameError("too_large", f"{len(data)} bytes > cap of {max_bytes}")
    if not data.startswith(JPEG_SOI):
        raise FrameError("not_jpeg", "no start-of-image marker")
    # libjpeg "decodes" a truncated file by padding it grey and only warns on stderr; a
    # half-grey frame would be classified as something, so insist on the end marker
    # (some encoders pad a few bytes after it).
    if JPEG_EOI not in data[-16:]:
        raise FrameError("truncated", "no end-of-image marker")
    width, height = jpeg_size(data)
    if width == 0 or height == 0:
        raise FrameError("bad_jpeg", f"declared size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise FrameError("too_large", f"declared size {width}x{height} > {MAX_PIXELS} px")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:
        raise FrameError("bad_jpeg", str(err)) from err
    if img is None:
        raise FrameError("bad_jpeg", "OpenCV could not decode it")
    return img


class VideoSource:
    """Frames from ``cv2.VideoCapture``: a camera index, a stream URL or a video file.

        async with VideoSource("rtsp://cam-3/stream", source_id="cam-3", clock=clock) as src:
            async for frame in src.frames():
                classifier.submit(frame)

    ``every_n`` keeps one frame in n (a 30 fps camera does not need 30 classifications a
    second to see a product go by). A file ends with its last frame; a camera or stream
    that stops delivering raises ``SourceError`` so that the supervisor restarts it.
    """

    def __init__(
        self,
        uri: str | int,
        *,
        source_id: str,
        clock: Clock,
        every_n: int = 1,
        max_frames: int | None = None,
    ) -> None:
        if every_n < 1:
            raise SourceError(source_id, f"every_n must be >= 1, got {every_n}")
        self.uri = uri
        self.source_id = source_id
        self.clock = clock
        self.every_n = every_n
        self.max_frames = max_frames
        self.is_file = isinstance(uri, str) and "://" not in uri
        self._cap: cv2.VideoCapture | None = None

    async def __aenter__(self) -> VideoSource:
        # Opening a camera or an RTSP stream blocks for up to seconds: off the loop.
        self._cap = await asyncio.to_thread(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            await asyncio.to_thread(cap.release)  # release joins capture threads

    def _open(self) -> cv2.VideoCapture:
        try:
            cap = cv2.VideoCapture(self.uri)
        except cv2.error as err:
            raise SourceError(self.source_id, str(err)) from err
        if not cap.isOpened():
            cap.release()
            raise SourceError(self.source_id, f"cannot open {self.uri!r}")
        return cap

    def _read(self) -> np.ndarray | None:
        """Grab ``every_n`` frames and decode the last one (``grab`` skips the decode)."""
        assert self._cap is not None
        for _ in range(self.every_n - 1):
            if not self._cap.grab():
                return None
        ok, img = self._cap.read()
        return img if ok else None

    async def frames(self) -> AsyncIterator[Frame]:
        if self._cap is None:
            raise SourceError(self.source_id, "not open (use `async with`)")
        n = 0
        while self.max_frames is None or n < self.max_frames:
            # VideoCapture.read blocks until the next frame arrives (up to 1/fps, or a
            # network timeout for a stream): off the loop.
            img = await asyncio.to_thread(self._read)
            if img is None:
                if self.is_file:
                    return
                raise SourceError(self.source_id, "stopped delivering frames")
            n += 1
            yield Frame(source=self.source_id, ts_ms=self.clock.now_ms(), image=img)


FrameSink = Callable[[Frame], object]


class CartSnapshots:
    """Cart snapshots from the store-local bus, handed to ``sink`` as undecoded frames.

    Envelope errors (not JSON, bad base64, oversize, not a JPEG at all) are counted in
    ``storefleet_vision_bad_frames_total`` here; errors inside the JPEG are counted where
    it is decoded (the classifier).
    """

    def __init__(self, ctx: DriverContext, *, sink: FrameSink, metrics: VisionMetrics) -> None:
        self.ctx = ctx
        self.sink = sink
        self.metrics = metrics
        self.received = 0

    def attach(self) -> None:
        self.ctx.on_local(CART_KIND, self._on_message)

    async def _on_message(self, cart_id: str, type_: str, payload: bytes) -> None:
        if type_ != SNAPSHOT:
            return
        try:
            jpeg, meta = decode_snapshot(payload)
            if not jpeg.startswith(JPEG_SOI):
                raise FrameError("not_jpeg", "no start-of-image marker")
        except (DecodeError, FrameError) as err:
            self.metrics.bad_frames.labels(reason=err.reason).inc()
            logger.warning("cart %s: bad snapshot: %s", cart_id, err)
            return
        self.received += 1
        self.sink(
            Frame(
                source=cart_id,
                ts_ms=meta.ts if meta is not None else self.ctx.clock.now_ms(),
                jpeg=jpeg,
                snapshot_id=meta.snapshot_id if meta is not None else None,
                session_id=meta.session_id if meta is not None else None,
            )
        )
