"""Compiled promotion rules, one module per family of promotion kinds.

``compile`` (in ``pricing.ruleset``) turns each pydantic promotion into a plain object
with ``__slots__`` and pre-computed sets, so the hot path reads attributes and does
integer arithmetic only. Every family module exposes its rule classes; item, threshold
and coupon rules build ``Option`` objects that the best-price search chooses among.
"""
