"""Shape grammars of the ten product categories, drawn upright and centred in a
``SIZE`` x ``SIZE`` box onto a BGR layer and its coverage mask (``synth`` poses them,
puts them in a scene and adds the camera's nuisances).

A can is a shaded cylinder with metal rims, a bottle has shoulders, a neck and a cap, a
cereal box shows a side face and a bowl, a milk carton a gabled top and fin, fruit are
apples, oranges or bananas, a snack bag has crimped edges and foil glare, a detergent jug
a handle loop, bread is a scored loaf, an egg carton a row of cups, a yogurt cup a
tapered tub with a foil lid. Brand colours, labels and proportions are random.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from protocols.vision import PRODUCT_CATEGORIES

SIZE = 128  # px, the side of a rendered frame

Rng = np.random.Generator
Color = tuple[int, int, int]


# ---- small drawing helpers -------------------------------------------------------


def random_color(rng: Rng, lo: int = 30, hi: int = 230) -> Color:
    c = rng.integers(lo, hi, size=3)
    return (int(c[0]), int(c[1]), int(c[2]))


def jitter(rng: Rng, base: Color, amount: int) -> Color:
    c = np.clip(np.array(base) + rng.integers(-amount, amount + 1, size=3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _scale(c: Color, f: float) -> Color:
    """The colour ``c`` made darker (f < 1) or lighter (f > 1)."""
    return (min(255, int(c[0] * f)), min(255, int(c[1] * f)), min(255, int(c[2] * f)))


def _poly(img: np.ndarray, mask: np.ndarray, pts: np.ndarray, color: Color) -> None:
    p = np.round(pts).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(img, [p], color, lineType=cv2.LINE_AA)
    cv2.fillPoly(mask, [p], 255, lineType=cv2.LINE_AA)


def _rect(
    img: np.ndarray,
    mask: np.ndarray | None,
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    color: Color,
) -> None:
    pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    _poly(img, mask if mask is not None else np.zeros(img.shape[:2], np.uint8), pts, color)


def _text_bars(
    img: np.ndarray, rng: Rng, x0: float, y0: float, w: float, n: int, color: Color
) -> None:
    """Lines of 'text': short dark bars, like a label seen from a metre away."""
    for i in range(n):
        lw = w * rng.uniform(0.4, 1.0)
        y = y0 + i * 5
        cv2.line(img, (int(x0), int(y)), (int(x0 + lw), int(y)), color, 2, cv2.LINE_AA)


def _cylinder_shade(img: np.ndarray, mask: np.ndarray, x0: int, x1: int) -> None:
    """Darken towards the left and right edges of [x0, x1): the look of a cylinder."""
    xs = np.arange(img.shape[1], dtype=np.float32)
    t = np.clip((xs - x0) / max(1, x1 - x0), 0, 1)
    profile = 0.55 + 0.45 * np.sin(np.pi * t) + 0.25 * np.exp(-((t - 0.3) ** 2) / 0.004)
    sel = mask > 0
    shaded = img.astype(np.float32) * profile[None, :, None]
    img[sel] = np.clip(shaded[sel], 0, 255).astype(np.uint8)


# ---- one shape grammar per category (drawn upright, centred in a SIZE box) ---------


def _can(img: np.ndarray, mask: np.ndarray, rng: Rng) -> None:
    w, h = rng.uniform(36, 48), rng.uniform(76, 92)
    x0, y0 = 64 - w / 2, 64 - h / 2
    body = random_color(rng)
    _rect(img, mask, x0, y0 + 4, x0 + w, y0 + h - 4, body)
    band = random_color(rng)
    by = y0 + h * rng.uniform(0.3, 0.55)
    _rect(img, None, x0, by, x0 + w, by + h * rng.uniform(0.1, 0.25), band)
    cv2.circle(img, (64, int(y0 + h * 0.3)), int(w * 0.22), random_color(rng), -1, cv2.LINE_AA)
    _cylinder_shade(img, mask, int(x0), int(x0 + w))
    metal = jitter(rng, (190, 190, 195), 25)
    for yy in (y0 + 4, y0 + h - 4):
        cv2.ellipse(img, (64, int(yy)), (int(w / 2), 5), 0, 0, 360, metal, -1, cv2.LINE_AA)
        cv2.ellipse(mask, (64, int(yy)), (int(w / 2), 5), 0, 0, 360, 255, -1, cv2.LINE_AA)
    # the lid's inner rim, darker than the rim itself
    cv2.ellipse(img, (64, int(y0 + 4)), (int(w / 2) - 3, 3), 0, 0, 360, (120, 120, 125), 1)


def _bottle(img: np.ndarray, mask: np.ndarray, rng: Rng) -> None:
    w, h = rng.uniform(30, 40), rng.uniform(96, 112)
    neck = rng.uniform(10, 15)
    top = 64 - h / 2
    shoulder = top + h * rng.uniform(0.25, 0.35)
    glass = [(40, 120, 40), (30, 60, 110), (200, 190, 170), (140, 70, 20)][rng.integers(4)]
    glass = jitter(rng, glass, 25)
    pts = np.array(
        [
            [64 - neck / 2, top + 8],
            [64 + neck / 2, top + 8],
            [64 + neck / 2, shoulder - 12],
            [64 + w / 2, shoulder],
            [64 + w / 2, top + h - 4],
            [64 + w / 2 - 4, top + h],
            [64 - w / 2 + 4, top + h],
            [64 - w / 2, top + h - 4],
            [64 - w / 2, shoulder],
            [64 - neck / 2, shoulder - 12],
        ]
    )
    _poly(img, mask, pts, glass)
    _rect(img, mask, 64 - neck / 2 - 1, top, 64 + neck / 2 + 1, top + 9, random_color(rng))
    ly = shoulder + h * rng.uniform(0.08, 0.2)
    _rect(img, None, 64 - w / 2, ly, 64 + w / 2, ly + h * rng.uniform(0.2, 0.3), random_color(rng))
    _text_bars(img, rng, 64 - w / 2 + 4, ly + 6, w - 8, 2, random_color(rng, 0, 80))
    _cylinder_shade(img, mask, int(64 - w / 2), int(64 + w / 2))


def _cereal_box(img: np.ndarray, mask: np.ndarray, rng: Rng) -> None:
    w, h = rng.uniform(62, 78), rng.uniform(90, 108)
    d = rng.uniform(8, 16)  # visible side depth
    x0, y0 = 64 - (w + d) / 2, 64 - h / 2
    front = random_color(rng, 60, 255)
    side = _scale(front, 0.6)
    _poly(
        img,
        mask,
        np.array(
            [
                [x0 + w, y0],
                [x0 + w + d, y0 - d * 0.5],
                [x0 + w + d, y0 + h - d * 0.5],
                [x0 + w, y0 + h],
            ]
        ),
        side,
    )
    _poly(
        img,
        mask,
        np.array([[x0, y0], [x0 + d, y0 - d * 0.5], [x0 + w + d, y0 - d * 0.5], [x0 + w, y0]]),
        _scale(front, 0.8),
    )
    _rect(img, mask, x0, y0, x0 + w, y0 + h, front)
    _rect(img, None, x0 + 4, y0 + 6, x0 + w - 4, y0 + 6 + h * 0.18, random_color(rng))  # brand
    _text_bars(img, rng, x0 + 8, y0 + 10, w - 16, 2, (255, 255, 255))
    bowl_c = (int(x0 + w * 0.5), int(y0 + h * 0.65))
    cv2.ellipse(img, bowl_c, (int(w * 0.32), int(h * 0.16)), 0, 0, 180, random_color(rng), -1)
    for _ in range(8):  # flakes in the bowl
        p = (bowl_c[0] + int(rng.integers(-18, 18)), bowl_c[1] + int(rng.integers(-6, 4)))
        cv2.circle(img, p, int(rng.integers(2, 5)), jitter(rng, (60, 160, 220), 40), -1)


def _milk_carton(img: np.ndarray, mask: np.ndarray, rng: Rng) -> None:
    w, h = rng.uniform(40, 50), rng.uniform(66, 80)
    d = rng.uniform(8, 14)
    x0, y0 = 64 - (w + d) / 2, 64 - h / 2 + 14
    body = jitter(rng, (235, 235, 235) if rng.random() < 0.7 else (200, 225, 240), 20)
    side = _scale(body, 0.7)
    _rect(img, mask, x0 + w, y0, x0 + w + d, y0 + h, side)
    _rect(img, mask, x0, y0, x0 + w, y0 + h, body)
    roof = y0 - rng.uniform(14, 20)
    _poly(img, mask, np.array([[x0, y0], [x0 + w / 2, roof], [x0 + w, y0]]), _scale(body, 0.85))
    _poly(
        img,
        mask,
        np.array([[x0 + w, y0], [x0 + w / 2, roof], [x0 + w / 2 + d, roof], [x0 + w + d, y0]]),
        side,
    )
    _rect(img, mask, x0 + w / 2 - 2, roof - 7, x0 + w / 2 + d + 2, roof + 1, body)  # fin
    band = random_color(rng)
    _rect(img, None, x0, y0 + h * 0.45, x0 + w, y0 + h * 0.7, band)
    cv2.circle(img, (int(x0 + w / 2), int(y0 + h * 0.25)), int(w * 0.15), random_color(rng), -1)


def _fruit(img: np.ndarray, mask: np.ndarray, rng: Rng) -> None:
    kind = rng.integers(3)
    if kind == 2:  # banana: a thick crescent
        col = jitter(rng, (40, 210, 230), 25)
        c, r = (64, int(rng.uniform(20, 34))), int(rng.uniform(50, 60))  # px
        th = rng.uniform(14, 20)
        outer = cv2.ellipse2Poly(c, (r, int(r * 0.9)), 0, 30, 150, 5)
        inner = cv2.ellipse2Poly(c, (int(r - th), int(r * 0.9 - th * 1.3)), 0, 30, 150, 5)
        _poly(img, mask, np.concatenate([outer, inner[::-1]]), col)
        for p in (outer[0], outer[-1]):
            cv2.circle(img, (int(p[0]), int(p[1])), 3, (30, 50, 60), -1)
        return
    n = int(rng.integers(1, 4))
    for _ in range(n):
        rad = rng.uniform(22, 36) / math.sqrt(n) * 1.3
        cx, cy = 64 + rng.uniform(-20, 20) * (n > 1), 64 + rng.uniform(-16, 16) * (n > 1)
        base = (40, 40, 200) if kind == 0 and rng.random() < 0.7 else (60, 190, 90)
        if kind == 1:
            base = (30, 140, 245)  # orange
        col = jitter(rng, base, 30)
        cv2.circle(img, (int(cx), int(cy)), int(rad), col, -1, cv2.LINE_AA)
        cv2.circle(mask, (int(cx), int(cy)), int(rad), 255, -1, cv2.LINE_AA)
        hi = (
            min(255, int(col[0] * 1.5) + 40),
            min(255, int(col[1] * 1.5) + 40),
            min(255, int(col[2] * 1.5) + 40),
        )  # specular highlight
        glint = (int(cx - rad * 0.35), int(cy - rad * 0.35))
        cv2.circle(img, glint, max(2, int(rad * 0.22)), hi, -1)
        if kind == 0:
            cv2.line(
                img,
                (int(cx), int(cy - rad * 0.8)),
                (int(cx + 3), int(cy - rad * 1.2)),
                (20, 60, 90),
                2,
                cv2.LINE_AA,
            )
        else:  # orange peel dimples
            for _ in range(12):
                a, rr = rng.uniform(0, 2 * math.pi), rng.uniform(0, rad * 0.85)
                p = (int(cx + rr * math.cos(a)), int(cy + rr * math.sin(a)))
                cv2.circle(img, p, 1, _scale(col, 0.8), -1)


def _snack_bag(img: np.ndarray, mask: np.ndarray, rng: Rng) -> None:
    w, h = rng.uniform(60, 76), rng.uniform(80, 96)
    x0, y0, x1, y1 = 64 - w / 2, 64 - h / 2, 64 + w / 2, 64 + h / 2
    teeth = int(rng.integers(7, 11))
    top = [
        [x0 + w * i / teeth + (w / teeth / 2 if j else 0), y0 + (0 if j else 4)]
        for i in range(teeth)
        for j in (0, 1)
    ]
    bulge = rng.uniform(3, 7)
    right = [
        [x1 - 6 + bulge * math.sin(math.pi * t), y0 + 10 + (h - 20) * t]
        for t in np.linspace(0, 1, 8)
    ]
    bottom = [
        [x1 - w * i / teeth - (w / teeth / 2 if j else 0), y1 - (0 if j else 4)]
        for i in range(teeth)
        for j in (0, 1)
    ]
    left = [
        [x0 + 6 - bulge * math.sin(math.pi * t), y1 - 10 - (h - 20) * t]
        for t in np.linspace(0, 1, 8)
    ]
    col = random_color(rng, 40, 255)
    _poly(img, mask, np.array([*top, [x1, y0], *right, *bottom, [x0, y1], *left]), col)
    cv2.ellipse(
        img,
        (64, int(64 + h * 0.12)),
        (int(w * 0.3), int(h * 0.18)),
        0,
        0,
        360,
        jitter(rng, (70, 170, 220), 30),
        -1,
    )  # window onto the chips
    _rect(img, None, x0 + 8, y0 + h * 0.15, x1 - 8, y0 + h * 0.3, random_color(rng))
    for _ in range(2):  # foil glare
        xa = rng.uniform(x0 + 5, x1 - 20)
        cv2.line(
            img,
            (int(xa), int(y0 + 8)),
            (int(xa + 14), int(y1 - 8)),
            (245, 245, 245),
            int(rng.integers(1, 4)),
            cv2.LINE_AA,
        )
    img[mask == 0] = 0


def _detergent(img: np.ndarray, mask: np.ndarray, rng: Rng) -> None:
    w, h = rng.uniform(56, 68), rng.uniform(70, 84)
    x0, y0 = 64 - w / 2, 64 - h / 2 + 10
    col = [(180, 90, 30), (30, 120, 240), (150, 50, 120), (60, 170, 60)][rng.integers(4)]
    col = jitter(rng, col, 30)
    _rect(img, mask, x0, y0, x0 + w, y0 + h, col)
    hx0, hy0 = x0 + w * 0.45, y0 - h * 0.32  # handle: a loop on the top right
    _rect(img, mask, hx0, hy0, x0 + w - 2, y0 + 2, col)
    hole = (hx0 + 6, hy0 + 6, x0 + w - 9, y0 - 1)
    _rect(img, None, *hole, (0, 0, 0))
    _rect(mask, None, *hole, (0, 0, 0))
    cap = random_color(rng)
    _rect(img, mask, x0 + 4, y0 - 14, x0 + 20, y0 + 1, cap)
    lab = jitter(rng, (235, 235, 235), 20)
    _rect(img, None, x0 + 6, y0 + h * 0.3, x0 + w - 6, y0 + h * 0.8, lab)
    _text_bars(img, rng, x0 + 10, y0 + h * 0.4, w - 20, 3, random_color(rng, 0, 120))
    img[mask == 0] = 0


def _bread(img: np.ndarray, mask: np.ndarray, rng: Rng) -> None:
    w, h = rng.uniform(84, 104), rng.uniform(44, 56)
    x0, y0 = 64 - w / 2, 64 - h / 2
    crust = jitter(rng, (40, 110, 185), 25)
    _rect(img, mask, x0, y0 + h * 0.35, x0 + w, y0 + h, crust)
    cv2.ellipse(
        img,
        (64, int(y0 + h * 0.4)),
        (int(w / 2), int(h * 0.45)),
        0,
        180,
        360,
        crust,
        -1,
        cv2.LINE_AA,
    )
    cv2.ellipse(
        mask,
        (64, int(y0 + h * 0.4)),
        (int(w / 2), int(h * 0.45)),
        0,
        180,
        360,
        255,
        -1,
        cv2.LINE_AA,
    )
    light = _scale(crust, 1.35)
    for i in range(int(rng.integers(3, 6))):  # scores across the top
        cx = x0 + w * (0.2 + 0.15 * i)
        cv2.line(
            img,
            (int(cx - 6), int(y0 + h * 0.55)),
            (int(cx + 6), int(y0 + h * 0.05)),
            light,
            3,
            cv2.LINE_AA,
        )
    shade = np.linspace(1.15, 0.7, SIZE, dtype=np.float32)[:, None, None]
    sel = mask > 0
    img[sel] = np.clip(img.astype(np.float32) * shade, 0, 255).astype(np.uint8)[sel]
    if rng.random() < 0.5:  # in a bag with a twist tie
        cv2.rectangle(img, (int(x0 + w - 2), 58), (int(x0 + w + 8), 70), random_color(rng), -1)


def _egg_carton(img: np.ndarray, mask: np.ndarray, rng: Rng) -> None:
    w, h = rng.uniform(96, 112), rng.uniform(34, 44)
    x0, y0 = 64 - w / 2, 64 - h / 2 + 6
    col = jitter(rng, (150, 170, 180) if rng.random() < 0.6 else (190, 200, 215), 25)
    _rect(img, mask, x0, y0, x0 + w, y0 + h, col)
    n = int(rng.integers(4, 7))
    r = w / n / 2
    dark = _scale(col, 0.75)
    for i in range(n):
        c = (int(x0 + r + 2 * r * i), int(y0))
        cv2.ellipse(img, c, (int(r), int(r * 0.8)), 0, 180, 360, col, -1, cv2.LINE_AA)
        cv2.ellipse(mask, c, (int(r), int(r * 0.8)), 0, 180, 360, 255, -1, cv2.LINE_AA)
        cv2.ellipse(img, c, (int(r), int(r * 0.8)), 0, 180, 360, dark, 1, cv2.LINE_AA)
        cv2.line(img, (int(c[0] + r), int(y0)), (int(c[0] + r), int(y0 + h)), dark, 1)
    _rect(img, None, x0 + w * 0.3, y0 + h * 0.35, x0 + w * 0.7, y0 + h * 0.8, random_color(rng))


def _yogurt_cup(img: np.ndarray, mask: np.ndarray, rng: Rng) -> None:
    top_w, bot_w, h = rng.uniform(54, 66), rng.uniform(36, 46), rng.uniform(56, 72)
    y0 = 64 - h / 2
    col = jitter(rng, (240, 240, 240), 15) if rng.random() < 0.6 else random_color(rng, 120, 255)
    _poly(
        img,
        mask,
        np.array(
            [
                [64 - top_w / 2, y0],
                [64 + top_w / 2, y0],
                [64 + bot_w / 2, y0 + h],
                [64 - bot_w / 2, y0 + h],
            ]
        ),
        col,
    )
    band_y = y0 + h * rng.uniform(0.3, 0.5)
    cv2.circle(img, (64, int(band_y + 8)), int(bot_w * 0.3), random_color(rng), -1, cv2.LINE_AA)
    foil = jitter(rng, (200, 200, 210), 30)
    cv2.ellipse(img, (64, int(y0)), (int(top_w / 2 + 2), 7), 0, 0, 360, foil, -1, cv2.LINE_AA)
    cv2.ellipse(mask, (64, int(y0)), (int(top_w / 2 + 2), 7), 0, 0, 360, 255, -1, cv2.LINE_AA)
    _cylinder_shade(img, mask, int(64 - top_w / 2), int(64 + top_w / 2))


DRAW: tuple[Callable[[np.ndarray, np.ndarray, Rng], None], ...] = (
    _can,
    _bottle,
    _cereal_box,
    _milk_carton,
    _fruit,
    _snack_bag,
    _detergent,
    _bread,
    _egg_carton,
    _yogurt_cup,
)
assert len(DRAW) == len(PRODUCT_CATEGORIES)
