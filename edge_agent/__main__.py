"""``python -m edge_agent run --store ...`` (the same as ``storefleet edge run``)."""

from edge_agent.cli import main

if __name__ == "__main__":
    main()
