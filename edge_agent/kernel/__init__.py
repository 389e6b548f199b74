"""The agent's kernel: supervision tree, module contract, downlink routing (decision 0030)."""
