"""The pricing engine as it was before performance round 2, frozen as a test oracle.

A verbatim copy of ``pricing/engine.py``, ``allocate.py``, ``search.py``, ``ruleset.py``,
``money.py`` and ``rules/`` at commit 7d371df (only the imports point here), sharing the
input and output types with ``pricing``. ``tests/pricing/test_equivalence.py`` prices
thousands of generated baskets with both and demands identical ``PricedBasket``s, so an
optimisation of ``pricing`` can never change a price. Never edit it to make a test pass.
"""
