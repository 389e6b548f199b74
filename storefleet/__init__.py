"""storefleet: the distribution's command-line entry point and the embedded demo.

This package is the one place that composes the others (cloud, edge_agent,
firmware_sim) into a single process for ``storefleet demo``.
"""

__version__ = "0.1.0"
