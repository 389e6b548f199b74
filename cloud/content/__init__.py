"""Content manifests per store and their convergence (decision 0046)."""
