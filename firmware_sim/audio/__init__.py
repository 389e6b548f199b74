"""Simulated audio broadcast unit: applies ``protocols.audio`` outputs, logs and renders."""

from firmware_sim.audio.unit import AudioUnitSim, Segment, start_audio_unit_sim, tone_hz

__all__ = ["AudioUnitSim", "Segment", "start_audio_unit_sim", "tone_hz"]
