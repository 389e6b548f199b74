"""storefleet: cloud."""
