"""Rollouts (decision 0040): an artifact offered to stores wave by wave, advanced and
halted by the boxes' ``rollout_status`` events."""
