"""The store map as SVG, drawn from the layout: zones, racks, shelves, entrance.

Coordinates: one SVG unit per metre with y flipped (the layout's origin is the
south-west corner, SVG's the top-left), so the page can place the cart dot and the
route polyline with the same transform (``to_svg``).
"""

from __future__ import annotations

from html import escape

from edge_agent.cartscreen.route import Grid
from edge_agent.inference.triggers.storemap import Point, StoreMap

_ZONE_FILL = ("#e8f5e9", "#fff8e1", "#e3f2fd", "#fce4ec", "#ede7f6", "#e0f7fa", "#f1f8e9")


def to_svg(store: StoreMap, p: Point) -> Point:
    return (round(p[0], 2), round(store.height_m - p[1], 2))


def render(store: StoreMap, grid: Grid) -> str:
    w, h = store.width_m, store.height_m
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w:g} {h:g}" '
             f'id="storemap" preserveAspectRatio="xMidYMid meet">',
             f'<rect x="0" y="0" width="{w:g}" height="{h:g}" fill="#fafafa" stroke="#555" '
             'stroke-width="0.1"/>']
    for i, z in enumerate(store.zones):
        x0, y0, x1, y1 = z.rect
        sx, sy = to_svg(store, (x0, y1))
        parts.append(f'<rect class="zone" data-zone="{escape(z.id)}" x="{sx}" y="{sy}" '
                     f'width="{x1 - x0:g}" height="{y1 - y0:g}" '
                     f'fill="{_ZONE_FILL[i % len(_ZONE_FILL)]}" stroke="#bbb" '
                     'stroke-width="0.05"/>')
        tx, ty = to_svg(store, (x0 + 0.3, y1 - 0.8))
        parts.append(f'<text x="{tx}" y="{ty}" font-size="0.7" fill="#777" '
                     f'data-i18n-zone="{escape(z.id)}">{escape(z.id)}</text>')
    for x0, y0, x1, y1 in grid.racks:
        sx, sy = to_svg(store, (x0, y1))
        parts.append(f'<rect class="rack" x="{sx}" y="{sy}" width="{x1 - x0:g}" '
                     f'height="{y1 - y0:g}" fill="#b0bec5" rx="0.2"/>')
    for s in store.shelves:
        x, y = to_svg(store, s.pos)
        parts.append(f'<g class="shelf" data-shelf="{escape(s.id)}"><circle cx="{x}" cy="{y}" '
                     'r="0.45" fill="#8d6e63"/>'
                     f'<text x="{x + 0.6}" y="{y + 0.25}" font-size="0.6" fill="#4e342e">'
                     f'{escape(s.id)}</text></g>')
    ex, ey = to_svg(store, store.entrance)
    parts.append(f'<rect x="{ex - 1}" y="{ey - 0.3}" width="2" height="0.6" fill="#43a047"/>')
    parts.append('<polyline id="route" fill="none" stroke="#1e88e5" stroke-width="0.25" '
                 'stroke-dasharray="0.6 0.3" points=""/>')
    parts.append('<circle id="cart-dot" cx="-5" cy="-5" r="0.6" fill="#e53935" '
                 'stroke="#fff" stroke-width="0.15"/>')
    parts.append("</svg>")
    return "".join(parts)
