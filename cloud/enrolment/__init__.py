"""Store identities: provision (a one-time token), enrol (the box fetches its bundle:
key, certificate, CA, broker URL), revoke (CRL and the broker's dynamic security
plugin, and the API refuses the store's device tokens). Decision 0035."""
