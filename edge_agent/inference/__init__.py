"""On-box inference: models that run on the store box (positioning, vision, triggers)."""
