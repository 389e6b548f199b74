"""Audio broadcast units: the store's schedule (pure), its local cache and the driver."""

from edge_agent.drivers.audio.cache import AssetCache
from edge_agent.drivers.audio.driver import ASSET_MISSING, NO_SCHEDULE, AudioDriver
from edge_agent.drivers.audio.schedule import Scheduler

__all__ = ["ASSET_MISSING", "NO_SCHEDULE", "AssetCache", "AudioDriver", "Scheduler"]
