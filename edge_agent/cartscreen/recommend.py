"""Recommendations from the basket: co-occurrence first, then same category.

1. **Co-occurrence**: for each item in the basket, the items most often bought together
   with it at this store (counted over baskets paid on the carts, seeded with pairs
   from the store's sample / merchandising data), strongest first.
2. **Same category**: fill up with other items of the basket's categories, cheapest
   first (a "you may also like" that never upsells blindly).

Items already in the basket are never suggested. Deterministic (ties by sku), cheap
(dictionary lookups over a bounded table), no model to train or ship.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from pricing import Catalog

MAX_PAIRS = 50_000  # bounded memory: the weakest pairs go first when full


class Recommender:
    def __init__(self, pairs: Iterable[tuple[str, str] | list[str]] = ()) -> None:
        self.pairs: Counter[tuple[str, str]] = Counter()
        for a, b in pairs:
            self._add(a, b)

    def _add(self, a: str, b: str, n: int = 1) -> None:
        if a == b:
            return
        self.pairs[(a, b)] += n
        self.pairs[(b, a)] += n
        if len(self.pairs) > MAX_PAIRS:
            for key, _ in self.pairs.most_common()[-len(self.pairs) // 10:]:
                del self.pairs[key]

    def learn(self, basket: Mapping[str, int]) -> None:
        skus = sorted(basket)
        for i, a in enumerate(skus):
            for b in skus[i + 1:]:
                self._add(a, b)

    def suggest(self, basket: Mapping[str, int], catalog: Catalog, *, limit: int = 4) -> list[str]:
        have = set(basket)
        scores: Counter[str] = Counter()
        for (a, b), n in self.pairs.items():
            if a in have and b not in have and b in catalog.items:
                scores[b] += n
        out = [sku for sku, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]
        cats = {catalog.items[s].category for s in have if s in catalog.items}
        same = sorted((item.price, sku) for sku, item in catalog.items.items()
                      if item.category in cats and sku not in have and sku not in out)
        out.extend(sku for _, sku in same)
        return out[:limit]
