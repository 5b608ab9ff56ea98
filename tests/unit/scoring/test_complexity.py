"""The generic code length of images and the complexity-corrected likelihood."""

from __future__ import annotations

import math
import zlib

import numpy as np

from streamvae.scoring.complexity import code_length_bits, complexity_corrected


def test_the_code_length_is_deflate_of_the_sub_filtered_8_bit_image():
    rng = np.random.default_rng(0)
    images = rng.random((3, 2 * 4 * 5), dtype=np.float32)
    bits = code_length_bits(images, (2, 4, 5))
    for image, got in zip(images, bits, strict=True):
        pixels = np.rint(image * 255).astype(np.int64).reshape(2, 4, 5)
        filtered = pixels.copy()
        filtered[..., 1:] = (pixels[..., 1:] - pixels[..., :-1]) % 256
        assert got == 8 * len(zlib.compress(filtered.astype(np.uint8).tobytes(), 6))


def test_simple_images_get_short_codes_and_smooth_rows_cost_little():
    blank = np.zeros((1, 28 * 28), np.float32)
    ramp = np.tile(np.linspace(0.0, 1.0, 28, dtype=np.float32), 28)[None]  # smooth rows
    noise = np.random.default_rng(1).random((1, 28 * 28), dtype=np.float32)
    blank_bits, ramp_bits, noise_bits = (
        code_length_bits(x, (1, 28, 28))[0] for x in (blank, ramp, noise)
    )
    assert blank_bits < ramp_bits < noise_bits
    # the ramp's row differences are nearly constant: the filter makes it almost as cheap
    # as a blank image, where the raw bytes would not be
    assert ramp_bits < 0.25 * noise_bits


def test_the_correction_turns_a_simplicity_bonus_into_no_bonus():
    # two images the model likes equally once the simpler one's shorter code is
    # accounted for: -log2 p differs by exactly the code-length difference
    code = np.array([400.0, 1400.0])
    neg_elbo_bits = np.array([100.0, 1100.0])  # the simple image looks 1000 bits likelier
    corrected = complexity_corrected(neg_elbo_bits * math.log(2.0), code)
    np.testing.assert_allclose(corrected, [-300.0, -300.0])
