from firmware_sim.cli import app

app(prog_name="storefleet sim")
