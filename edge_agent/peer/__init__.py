"""The store's peer cache (decision 0049): in a store with several boxes, one box (the
primary, the one with the uplink) fetches each artifact and price book from the cloud
once and serves the others from its caches.

- ``transport.py``: ``PeerTransport``, a box's HTTP towards the cloud with what the
  primary caches sent to the primary instead, and the cloud again when the primary
  does not answer (counted).
- ``artifacts.py``: ``PeerArtifacts``, the primary's artifact caches, filled on a miss
  (one upstream download per sha256, however many boxes ask at once).
- ``books.py``: ``BookCache``, the primary's copy of the store's price-book wire
  headers (fresh for a few seconds) and bodies (by version, verified).
- ``server.py``: the primary's HTTP server for the other boxes (the cloud's paths,
  ``Range``, the store's device token).
- ``once.py``: ``Once``, concurrent requests for one key sharing one run of the work.

The module that wires them into a box is ``edge_agent.modules.peer`` (``[peer]``).
"""
