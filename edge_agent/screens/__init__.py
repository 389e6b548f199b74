"""Screen playlists on the store box (decision 0051): what the cart screens and the
signage show now, served over HTTP (``web.py``), with promotion cards rendered from the
till's live promotions (``cards.py``). The module is ``edge_agent.modules.screens``."""

from edge_agent.screens.player import ScreenPlayer, ScreensMetrics

__all__ = ["ScreenPlayer", "ScreensMetrics"]
