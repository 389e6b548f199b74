"""Procedural product images: what a cart camera might see, drawn with OpenCV.

No photographs can be downloaded here, so the training and test data are drawn: each
of the ten categories of ``protocols.vision.PRODUCT_CATEGORIES`` has a shape grammar
(a can is a shaded cylinder with metal rims, a milk carton has a gabled top, a snack
bag has crimped edges ...) with random brand colours, labels and proportions. Each
image then gets the nuisances of a real basket camera: random pose (rotation, scale,
shift, perspective), a cluttered background with shelf edges and other packages, a
shopper's hand occluding part of the product, uneven lighting and colour cast, defocus
or motion blur, sensor noise and JPEG compression.

``Nuisance.hard()`` is the held-out regime: stronger everything, and it is always drawn
from other seeds than training. Everything is deterministic in the seed.

    images, labels = make_dataset(n_per_class=200, seed=1)      # uint8 (N,128,128,3) BGR
    jpeg = render_jpeg(3, np.random.default_rng(7))              # one JPEG of category 3
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from models.vision.shapes import DRAW, SIZE, Rng, jitter, random_color
from protocols.vision import PRODUCT_CATEGORIES

__all__ = ["DRAW", "SIZE", "Nuisance", "make_dataset", "render", "render_jpeg"]


@dataclass(frozen=True, slots=True)
class Nuisance:
    """How far a scene may stray from a clean product shot. The defaults are the
    training regime; ``hard()`` (held out) is stronger in every dimension."""

    rotation_deg: float = 35.0
    scale: tuple[float, float] = (0.6, 1.0)
    shift: float = 0.14  # of the frame side
    perspective: float = 0.08  # corner jitter, of the frame side
    clutter: tuple[int, int] = (1, 5)
    hand_p: float = 0.6
    hand_size: tuple[float, float] = (0.15, 0.34)
    gain: tuple[float, float] = (0.6, 1.4)
    cast: float = 0.16
    blur_p: float = 0.5
    blur_max: int = 2  # kernel half-size
    noise_sigma: float = 7.0
    jpeg_quality: tuple[int, int] = (30, 95)

    @classmethod
    def hard(cls) -> Nuisance:
        return cls(
            rotation_deg=40.0,
            scale=(0.55, 1.05),
            shift=0.16,
            perspective=0.1,
            clutter=(2, 6),
            hand_p=0.7,
            hand_size=(0.2, 0.38),
            gain=(0.55, 1.45),
            cast=0.2,
            blur_p=0.6,
            blur_max=3,
            noise_sigma=9.0,
            jpeg_quality=(20, 70),
        )


# ---- the scene: background, pose, hand, light, optics, compression -----------------------


def _background(rng: Rng, nz: Nuisance) -> np.ndarray:
    base = np.array(random_color(rng, 20, 220), np.float32)
    g = rng.uniform(-0.3, 0.3, size=2).astype(np.float32)
    ramp = np.arange(SIZE, dtype=np.float32) / SIZE
    bg = base * (1 + g[0] * ramp[None, :, None] + g[1] * ramp[:, None, None])
    # coarse 8x8 blotches: floor tiles, basket mesh, out-of-focus shelves
    blotch = rng.normal(0, 8, size=(SIZE // 8, SIZE // 8, 3)).astype(np.float32)
    bg += cv2.resize(blotch, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
    img = np.clip(bg, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 3))):  # shelf edges / basket wires
        y = int(rng.integers(0, SIZE))
        cv2.line(
            img,
            (0, y),
            (SIZE, y + int(rng.integers(-20, 20))),
            random_color(rng),
            int(rng.integers(1, 6)),
        )
    for _ in range(int(rng.integers(*nz.clutter))):  # other things in the basket
        c = (int(rng.integers(0, SIZE)), int(rng.integers(0, SIZE)))
        if rng.random() < 0.5:
            cv2.rectangle(
                img,
                c,
                (c[0] + int(rng.integers(10, 50)), c[1] + int(rng.integers(10, 50))),
                random_color(rng),
                -1,
            )
        else:
            cv2.circle(img, c, int(rng.integers(5, 22)), random_color(rng), -1)
    return img


def _pose(rng: Rng, nz: Nuisance) -> np.ndarray:
    """A 3x3 homography: rotation, scale and shift about the centre, plus perspective."""
    a = math.radians(rng.uniform(-nz.rotation_deg, nz.rotation_deg))
    s = rng.uniform(*nz.scale)
    t = rng.uniform(-nz.shift, nz.shift, size=2) * SIZE
    c = SIZE / 2
    m = np.array(
        [
            [s * math.cos(a), -s * math.sin(a), 0.0],
            [s * math.sin(a), s * math.cos(a), 0.0],
            [0, 0, 1],
        ]
    )
    m[0, 2] = c + t[0] - (m[0, 0] * c + m[0, 1] * c)
    m[1, 2] = c + t[1] - (m[1, 0] * c + m[1, 1] * c)
    src = np.array([[0, 0], [SIZE, 0], [SIZE, SIZE], [0, SIZE]], np.float32)
    dst = src + rng.uniform(-nz.perspective, nz.perspective, size=(4, 2)).astype(np.float32) * SIZE
    return cv2.getPerspectiveTransform(src, dst) @ m


def _hand(img: np.ndarray, rng: Rng, nz: Nuisance) -> None:
    """A shopper's hand reaching in from one edge: palm plus four fingers."""
    skin = jitter(rng, [(120, 160, 220), (90, 130, 190), (60, 90, 140)][rng.integers(3)], 20)
    size = rng.uniform(*nz.hand_size) * SIZE
    edge = rng.integers(4)
    along = rng.uniform(0.2, 0.8) * SIZE
    depth = rng.uniform(0.15, 0.4) * SIZE  # how far the fingertips reach in
    pos = [(along, SIZE), (along, 0), (0, along), (SIZE, along)][edge]
    inward = [(0, -1), (0, 1), (1, 0), (-1, 0)][edge]
    palm = (int(pos[0] + inward[0] * depth * 0.3), int(pos[1] + inward[1] * depth * 0.3))
    cv2.ellipse(img, palm, (int(size * 0.6), int(size * 0.5)), 0, 0, 360, skin, -1)
    for k in range(4):
        off = (k - 1.5) * size * 0.28
        base = (palm[0] + inward[1] * off, palm[1] + inward[0] * off)
        tip = (
            base[0] + inward[0] * depth * rng.uniform(0.7, 1.0),
            base[1] + inward[1] * depth * rng.uniform(0.7, 1.0),
        )
        cv2.line(
            img,
            (int(base[0]), int(base[1])),
            (int(tip[0]), int(tip[1])),
            skin,
            max(3, int(size * 0.2)),
            cv2.LINE_AA,
        )


def render(category: int, rng: Rng, nz: Nuisance | None = None) -> np.ndarray:
    """One BGR uint8 (SIZE, SIZE, 3) frame of ``PRODUCT_CATEGORIES[category]``."""
    nz = nz or Nuisance()
    upright = np.zeros((SIZE, SIZE, 3), np.uint8)
    upright_mask = np.zeros((SIZE, SIZE), np.uint8)
    DRAW[category](upright, upright_mask, rng)
    h = _pose(rng, nz)
    layer = cv2.warpPerspective(upright, h, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(upright_mask, h, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    img = _background(rng, nz)
    alpha = (mask.astype(np.float32) * np.float32(1 / 255))[..., None]
    img = (img + (layer.astype(np.float32) - img) * alpha).astype(np.uint8)
    if rng.random() < nz.hand_p:
        _hand(img, rng, nz)
    gain = (rng.uniform(*nz.gain) * (1 + rng.uniform(-nz.cast, nz.cast, size=3))).astype(np.float32)
    light = np.linspace(1 - rng.uniform(0, 0.3), 1, SIZE, dtype=np.float32)
    light = light[:, None] if rng.random() < 0.5 else light[None, :]
    out = img.astype(np.float32) * gain[None, None, :] * light[..., None]
    if rng.random() < nz.blur_p:
        k = 2 * int(rng.integers(1, nz.blur_max + 1)) + 1
        if rng.random() < 0.5:
            out = cv2.GaussianBlur(out, (k, k), 0)
        else:  # motion blur along a random axis: the hand moves
            kern = np.zeros((k, k), np.float32)
            kern[k // 2, :] = 1.0 / k
            rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1)
            out = cv2.filter2D(out, -1, cv2.warpAffine(kern, rot, (k, k)))
    out += rng.standard_normal(size=out.shape, dtype=np.float32) * np.float32(nz.noise_sigma)
    return np.clip(out, 0, 255).astype(np.uint8)


def render_jpeg(category: int, rng: Rng, nz: Nuisance | None = None) -> bytes:
    nz = nz or Nuisance()
    q = int(rng.integers(nz.jpeg_quality[0], nz.jpeg_quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", render(category, rng, nz), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:  # cannot happen for a valid uint8 image; fail loudly rather than silently
        raise RuntimeError("JPEG encoding failed")
    return bytes(buf.tobytes())


def make_dataset(
    n_per_class: int, *, seed: int, hard: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded JPEG frames (N, SIZE, SIZE, 3) uint8 BGR and labels (N,) int64, shuffled.

    Every image passes through JPEG like a cart snapshot does. Class ``k``'s images come
    from their own stream ``(seed, k)``, so adding classes does not change the others.
    """
    nz = Nuisance.hard() if hard else Nuisance()
    images: list[np.ndarray] = []
    labels: list[int] = []
    for k in range(len(PRODUCT_CATEGORIES)):
        rng = np.random.default_rng([seed, k])
        for _ in range(n_per_class):
            buf = np.frombuffer(render_jpeg(k, rng, nz), np.uint8)
            images.append(np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)))
            labels.append(k)
    order = np.random.default_rng([seed, 999]).permutation(len(labels))
    return np.stack(images)[order], np.array(labels, np.int64)[order]
