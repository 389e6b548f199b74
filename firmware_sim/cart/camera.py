"""The cart's basket camera: a JPEG of the product going into the basket.

Pictures are drawn by the project's synthetic product generator (``models.vision.synth``,
the same shape grammars the vision model was trained on), under the nuisances of a
camera fixed above a basket: a little rotation and shift, some clutter, sometimes a
hand, mild blur, noise and JPEG compression. That is milder than the training regime
(a cart camera sees a product from a fixed height, close up), and on it the shipped
model is right about 99 % of the time (97 % at or above the agent's 0.6 confidence
floor, 200 pictures, seed 5).
"""

from __future__ import annotations

import random

import numpy as np

from protocols.vision import PRODUCT_CATEGORIES


def basket_jpeg(category: str, rng: random.Random) -> bytes:
    """A JPEG (128 x 128, a few kB) of a product of ``category``. CPU-bound (~20 ms):
    call it in a thread from async code."""
    # Imported here: OpenCV and the generator are only needed by carts with a camera.
    from models.vision.synth import Nuisance, render_jpeg

    # Above the basket: the product fills most of the frame and is seen from one height.
    basket = Nuisance(rotation_deg=15.0, scale=(0.8, 1.0), shift=0.05, perspective=0.03,
                      clutter=(0, 2), hand_p=0.3, gain=(0.85, 1.15), cast=0.05, blur_p=0.1,
                      blur_max=1, noise_sigma=3.0, jpeg_quality=(80, 92))
    return render_jpeg(PRODUCT_CATEGORIES.index(category),
                       np.random.default_rng(rng.getrandbits(63)), basket)
