"""Lane tills: the store's lane terminals sell through the box over the store network
(decision 0063).

- ``settings``: ``[till.lanes]`` (where the service listens) and one ``[[till.lanes.lane]]``
  per lane terminal (id, bearer token, the receipt printer it prints on);
- ``members``: who the shopper is (member id or phone now; the signed member code of a
  later slice resolves here too);
- ``baskets``: the open baskets of the lanes, in memory until completed;
- ``service``: ``LaneTills``, open / scan / member / coupons / tender / complete / refund
  on the one pricing engine and the till's ledger and outbox (``edge_agent.pos``);
- ``api``: the HTTP + JSON API (FastAPI, OpenAPI at ``/till/openapi.json``) and the
  cashier screen (``static/``) at ``/till/``.
"""
