"""storefleet: pricing."""
