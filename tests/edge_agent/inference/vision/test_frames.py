"""JPEG decoding never crashes on garbage; VideoCapture sources read real video files."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.inference.vision import Frame, FrameError, SourceError, VideoSource, decode_jpeg
from edge_agent.inference.vision.frames import MAX_PIXELS, jpeg_size
from protocols.clock import ManualClock


def _jpeg(img: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(buf.tobytes())


def _with_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its start-of-frame header claiming another size."""
    i = data.index(b"\xff\xc0")
    return data[: i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[i + 9 :]


def test_decodes_a_snapshot(product_jpeg: Callable[[int, int], bytes]) -> None:
    data = product_jpeg(0, 0)
    img = decode_jpeg(data)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert jpeg_size(data) == (128, 128)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda d: b"", "empty"),
        (lambda d: b"GIF89a" + d[6:], "not_jpeg"),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: d[:2] + b"\x00" * (len(d) - 4) + d[-2:], "bad_jpeg"),
        (lambda d: _with_size(d, 60_000, 60_000), "too_large"),
        (lambda d: _with_size(d, 0, 128), "bad_jpeg"),
        (lambda d: d + b"\0" * 600_000, "too_large"),
    ],
    ids=["empty", "gif", "truncated", "zeroed", "bomb-header", "zero-width", "oversize"],
)
def test_corrupt_jpegs_are_typed_errors(
    product_jpeg: Callable[[int, int], bytes], mangle: Callable[[bytes], bytes], reason: str
) -> None:
    with pytest.raises(FrameError) as err:
        decode_jpeg(mangle(product_jpeg(1, 0)))
    assert err.value.reason == reason


def test_scrambled_entropy_data_does_not_crash(product_jpeg: Callable[[int, int], bytes]) -> None:
    data = bytearray(product_jpeg(2, 0))
    rng = np.random.default_rng(3)
    for _ in range(50):  # flip bytes inside the compressed scan, keep the markers
        mangled = bytearray(data)
        for pos in rng.integers(len(data) // 2, len(data) - 4, size=20):
            mangled[pos] = int(rng.integers(0, 256))
        try:
            img = decode_jpeg(bytes(mangled))
        except FrameError as err:
            assert err.reason in {"bad_jpeg", "truncated"}
        else:
            assert img.shape == (128, 128, 3)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_frame_error(data: bytes) -> None:
    try:
        decode_jpeg(b"\xff\xd8" + data)
    except FrameError:
        pass


def test_frame_pixels_decodes_lazily(product_jpeg: Callable[[int, int], bytes]) -> None:
    assert Frame(source="C1", ts_ms=1, jpeg=product_jpeg(3, 0)).pixels().shape == (128, 128, 3)
    with pytest.raises(FrameError):
        Frame(source="C1", ts_ms=1).pixels()
    assert MAX_PIXELS >= 1920 * 1080  # a full-HD camera frame must pass


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


async def test_video_file_yields_every_frame(tmp_path: Path) -> None:
    frames = [np.full((96, 160, 3), 20 * i, np.uint8) for i in range(10)]
    path = tmp_path / "clip.avi"
    write_video(path, frames)
    clock = ManualClock()
    async with VideoSource(str(path), source_id="cam-1", clock=clock) as src:
        got = [f async for f in src.frames()]
    assert len(got) == 10
    assert all(f.source == "cam-1" and f.image is not None for f in got)
    assert got[0].image is not None and got[0].image.shape == (96, 160, 3)
    means = [float(f.image.mean()) for f in got if f.image is not None]
    assert means == sorted(means)  # in order, brighter each frame
    assert got[0].ts_ms == clock.now_ms()


async def test_every_n_and_max_frames(tmp_path: Path) -> None:
    frames = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(12)]
    path = tmp_path / "clip.avi"
    write_video(path, frames)
    async with VideoSource(str(path), source_id="cam", clock=ManualClock(), every_n=3) as src:
        got = [f async for f in src.frames()]
    assert len(got) == 4
    async with VideoSource(str(path), source_id="cam", clock=ManualClock(), max_frames=5) as src:
        assert len([f async for f in src.frames()]) == 5


async def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as err:
        async with VideoSource(str(tmp_path / "none.avi"), source_id="cam-9", clock=ManualClock()):
            pass
    assert err.value.source == "cam-9"
    with pytest.raises(SourceError):
        VideoSource("x.avi", source_id="cam", clock=ManualClock(), every_n=0)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_http_stream_yields_frames_then_source_error(tmp_path: Path) -> None:
    """A real TCP stream (HTTP) through FFmpeg: frames while it lasts; when the camera
    stops, a SourceError for the supervisor, not a silent end."""
    frames = [np.full((64, 64, 3), 15 * i, np.uint8) for i in range(8)]
    write_video(tmp_path / "cam.avi", frames)
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cam.avi"
        got: list[Frame] = []
        with pytest.raises(SourceError) as err:
            async with VideoSource(url, source_id="cam-http", clock=ManualClock()) as src:
                async for frame in src.frames():
                    got.append(frame)
        assert len(got) == 8
        assert "stopped delivering" in str(err.value)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
