"""Split an amount onto lines by the largest remainder method.

``largest_remainder(total, weights)`` gives every line ``floor(total * w / W)`` and hands
the units still missing, one each, to the lines with the largest remainders; ties go to
the lower index. Callers pass lines in canonical order (sorted by sku, then line id), so
"lower index" is the canonical tie-break and the split does not depend on scan order.

Properties the engine relies on (and the tests check):
- the shares sum to ``total`` exactly;
- when ``total <= sum(weights)`` no share exceeds its weight, so allocating a discount
  with weights = current line nets never drives a line below zero.
"""

from __future__ import annotations

from collections.abc import Sequence


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Shares of ``total`` proportional to non-negative integer ``weights``."""
    whole = sum(weights)
    if whole <= 0:
        if total:
            raise ValueError("cannot allocate a non-zero amount onto zero weights")
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    left = total - sum(shares)
    if left:
        rems = [total * w % whole for w in weights]
        # reverse=True keeps equal keys in index order (sorts are stable either way), so
        # this is "largest remainder first, ties to the lower index" without a tuple key
        for k in sorted(range(len(weights)), key=rems.__getitem__, reverse=True)[:left]:
            shares[k] += 1
    return shares
