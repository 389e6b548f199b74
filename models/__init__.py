"""storefleet: models."""
