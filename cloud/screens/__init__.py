"""Screen playlists authored at HQ (decision 0051): the chain's playlists for the cart
screens and the signage, compiled per store (its time zone, the version) into the
``playlists`` document of its content manifest (``protocols.screens``).

    spec = ScreenPlaylistsSpec.model_validate(body)          # 422 on a bad document
    doc = store_playlists(session, "s1")                      # from the database
"""

from cloud.screens.compile import latest, store_playlists
from cloud.screens.errors import ScreensError
from cloud.screens.model import ScreenPlaylistsSpec

__all__ = ["ScreenPlaylistsSpec", "ScreensError", "latest", "store_playlists"]
