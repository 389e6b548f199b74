"""storefleet: fleet."""
