"""storefleet: edge_agent."""
