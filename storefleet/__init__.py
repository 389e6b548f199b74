"""storefleet: storefleet."""
