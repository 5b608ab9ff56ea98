"""Input complexity: a generic lossless code length of an image, in bits.

A VAE trained on one kind of image gives *simpler* images (less ink, flat regions) higher
likelihoods than its own training images: the likelihood measures input complexity as much
as normality. Serrà et al. (ICLR 2020, "Input complexity and out-of-distribution detection
with likelihood-based generative models") correct it with a likelihood ratio against a
generic compressor: ``S(x) = -log2 p(x) - L(x)``, with ``L(x)`` the bits a lossless image
codec needs for ``x``. A simple image gets a short code, so a high likelihood earned by
simplicity alone no longer hides it.

``L`` here is what PNG does, without its container: the 8-bit image (pixels rounded from
[0, 1]), each row replaced by its differences to the left neighbour (PNG's ``sub`` filter,
modulo 256), then DEFLATE at level 6 (``zlib``'s and PNG's default). It costs about 30
microseconds for a 28x28 image, five times less than encoding a PNG with Pillow; level 9
would cost 50 and rank MNIST's images the same (Spearman 0.9995).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
LEVEL = 6
"""DEFLATE level of the code length."""


def code_length_bits(images: F32, shape: tuple[int, int, int]) -> F64:
    """Bits of each flat image ``(n, C*H*W)`` in [0, 1] under the codec above.

    >>> flat = np.zeros((1, 64), np.float32)
    >>> noisy = np.random.default_rng(0).random((1, 64), dtype=np.float32)
    >>> bool(code_length_bits(flat, (1, 8, 8))[0] < code_length_bits(noisy, (1, 8, 8))[0])
    True
    """
    c, h, w = shape
    pixels = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8).reshape(-1, c, h, w)
    filtered = pixels.copy()
    filtered[..., 1:] = np.diff(pixels, axis=-1)  # uint8 arithmetic wraps: modulo 256
    return np.array(
        [8.0 * len(zlib.compress(image.tobytes(), LEVEL)) for image in filtered], dtype=np.float64
    )


def complexity_corrected(neg_elbo: F64, code_bits: F64) -> F64:
    """``-log2 p(x) - L(x)``: the negative ELBO in bits less the generic code length.

    The Gaussian decoder's density differs from the probability of the 8-bit image by a
    constant (the bin width) for every image, so the ranking is Serrà et al.'s.
    """
    return np.asarray(neg_elbo, dtype=np.float64) / math.log(2.0) - code_bits
