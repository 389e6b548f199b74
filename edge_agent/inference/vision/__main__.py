"""Classify images or a video with the shipped model (a field tech's sanity check).

python -m edge_agent.inference.vision snapshot.jpg other.jpg
python -m edge_agent.inference.vision --video clip.avi --every-n 10
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from edge_agent.inference.vision.classifier import VisionClassifier
from edge_agent.inference.vision.errors import VisionError
from edge_agent.inference.vision.frames import VideoSource
from edge_agent.inference.vision.model import VisionModel
from protocols.clock import SystemClock


async def _video(clf: VisionClassifier, uri: str | int, every_n: int) -> None:
    async with VideoSource(uri, source_id="cli", clock=SystemClock(), every_n=every_n) as src:
        i = 0
        async for frame in src.frames():
            assert frame.image is not None
            # one frame at a time and nothing else runs: blocking here is harmless
            category, confidence = clf.classify(frame.image)
            print(f"frame {i * every_n}: {category} {confidence:.2f}")
            i += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m edge_agent.inference.vision", description=__doc__.split("\n")[0]
    )
    ap.add_argument("images", nargs="*", type=Path, help="JPEG files")
    ap.add_argument("--video", help="video file, stream URL or camera index")
    ap.add_argument("--every-n", type=int, default=1)
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        clf = VisionClassifier(VisionModel(args.model), registry=CollectorRegistry())
        print(f"model {clf.model.info.tag} ({clf.model.threads} thread(s))")
        status = 0
        for path in args.images:
            try:
                category, confidence = clf.classify(path.read_bytes())
                print(f"{path}: {category} {confidence:.2f}")
            except VisionError as err:
                print(f"{path}: {err}", file=sys.stderr)
                status = 1
        if args.video is not None:
            uri: str | int = int(args.video) if args.video.isdigit() else args.video
            asyncio.run(_video(clf, uri, args.every_n))
    except VisionError as err:
        print(err, file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
