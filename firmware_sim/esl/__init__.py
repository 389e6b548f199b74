"""Simulated ESL access point and its labels, speaking ``protocols.esl`` on the bus."""

from firmware_sim.esl.ap import EslApSim, SimLabel, start_esl_ap_sim

__all__ = ["EslApSim", "SimLabel", "start_esl_ap_sim"]
