"""Point of sale at the store box: receipts and the till's peripherals; the till itself
(``sales.PosService``: sell / refund priced locally, online or offline), its caches
(``cache``: signed promotion snapshot, catalog, coupon ranges), the offline policy
(``offline``), its SQLite ledger (``ledger``), the online-order desk (``orders``) and
``runtime.PosRuntime``, which the agent composes."""
