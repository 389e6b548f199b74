"""Benchmarks: ``python -m bench.<name> --json`` (wired into ``storefleet bench <name>``)."""
