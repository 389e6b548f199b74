"""storefleet: firmware_sim."""
