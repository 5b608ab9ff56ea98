"""Image arrays: loading for training and the checks on streamed .npy batches."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from streamvae.data.images import (
    ImageShape,
    binary_labels,
    builtin_digits,
    decode_image_batch,
    encode_npy,
    load_images,
    load_labelled_images,
    paste_anomalies,
    to_unit,
)
from streamvae.errors import DataError, PayloadDecodeError

SHAPE = ImageShape(1, 8, 8)
NPY = {"content-type": b"application/x-npy"}


def decode(array, headers=None, max_bytes=1 << 20, max_images=100):
    return decode_image_batch(
        encode_npy(array), NPY | (headers or {}), SHAPE, max_bytes=max_bytes, max_images=max_images
    )


def test_uint8_and_float32_batches_decode_to_the_same_pixels():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(3, 1, 8, 8), dtype=np.uint8)
    a = decode(u8, {"ids": json.dumps(["a", "b", 7]).encode()})
    b = decode((u8 / 255.0).astype(np.float32)[:, 0])  # (N, H, W) for one channel
    assert a.images.shape == (3, 64) and np.allclose(a.images, b.images)
    assert a.ids == ["a", "b", "7"] and b.ids == [None] * 3 and a.count == 3


def test_one_bad_image_is_rejected_alone():
    batch = np.full((4, 1, 8, 8), 0.5, np.float32)
    batch[1, 0, 2, 2] = np.nan
    batch[3, 0, 0, 0] = 1.5
    out = decode(batch)
    assert out.index == [0, 2] and out.images.shape == (2, 64)
    assert {i: e.reason for i, e in out.rejected.items()} == {1: "non_finite", 3: "out_of_range"}


def _npy_header_only(shape: tuple[int, ...]) -> bytes:
    """A float32 ``.npy`` header declaring ``shape``, followed by 1 KiB of data."""
    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(1024)


@pytest.mark.parametrize(
    ("value", "headers", "reason", "detail"),
    [
        (b"not npy", {}, "invalid_image", "not an .npy"),
        (encode_npy(np.zeros((2, 1, 9, 8), np.uint8)), {}, "invalid_image", "expected images"),
        (encode_npy(np.zeros((2, 8, 8), np.int32)), {}, "invalid_image", "uint8 or float32"),
        (encode_npy(np.zeros((0, 8, 8), np.uint8)), {}, "invalid_image", "empty batch"),
        (
            encode_npy(np.zeros((2, 8, 8), np.uint8)),
            {"content-type": b"image/png"},
            "invalid_image",
            "content-type",
        ),
        (
            encode_npy(np.zeros((2, 8, 8), np.uint8)),
            {"ids": b'["only-one"]'},
            "invalid_image",
            "'ids'",
        ),
        (encode_npy(np.zeros((2, 8, 8), np.uint8)), {"ids": b"{oops"}, "invalid_image", "'ids'"),
        (encode_npy(np.zeros((200, 8, 8), np.uint8)), {}, "too_large", "max_records"),
        (encode_npy(np.zeros((2, 8, 8), np.uint8))[:-10], {}, "invalid_image", "carries 118"),
        (encode_npy(np.zeros((2, 8, 8), np.uint8)) + b"xx", {}, "invalid_image", "carries 130"),
        (_npy_header_only((10**9, 3, 512, 512)), {}, "invalid_image", "declares float32"),
        (_npy_header_only((2**62, 2**62)), {}, "invalid_image", "declares float32"),
        (b"\x93NUMPY\x01\x00\x40\x00" + b"{" * 64, {}, "invalid_image", "unreadable .npy header"),
        (b"\x93NUMPY\x03\x00" + b"x" * 32, {}, "invalid_image", "version 3.0"),
        (b"", {}, "invalid_image", "empty"),
    ],
)
def test_unsound_messages_are_refused_whole(value, headers, reason, detail):
    # a header that declares a huge shape is refused before anything is allocated
    # (np.load of such a 1 KiB message raised MemoryError, which crashed the service)
    with pytest.raises(PayloadDecodeError) as err:
        decode_image_batch(value, NPY | headers, SHAPE, max_bytes=1 << 20, max_images=100)
    assert err.value.reason == reason and detail in err.value.detail


def test_pickled_object_arrays_never_load():
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PayloadDecodeError, match="object arrays"):
        decode_image_batch(buffer.getvalue(), NPY, SHAPE, max_bytes=1 << 20, max_images=10)


def test_size_limit():
    with pytest.raises(PayloadDecodeError) as err:
        decode(np.zeros((50, 8, 8), np.uint8), max_bytes=100)
    assert err.value.reason == "too_large"


def test_training_images_load_from_npy_npz_and_png_folders(tmp_path):
    from PIL import Image

    images = (np.random.default_rng(1).random((5, 1, 8, 8)) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", images)
    np.savez(tmp_path / "x.npz", X=images, y=np.arange(5))
    folder = tmp_path / "png"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[0]).save(folder / f"{i:03d}.png")
    from_npy, _ = load_images(tmp_path / "x.npy")
    from_npz, labels = load_images(tmp_path / "x.npz")
    from_png, _ = load_images(folder)
    assert np.array_equal(from_npy, from_npz) and np.array_equal(from_npy, from_png)
    assert from_npy.shape == (5, 1, 8, 8) and list(labels) == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match="does not exist"):
        load_images(tmp_path / "missing.npy")
    with pytest.raises(DataError, match="in \\[0, 1\\]"):
        to_unit(np.full((1, 1, 8, 8), 2.0, np.float32))


def test_labelled_images_load_from_an_npz_with_masks_and_an_mvtec_style_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    images = (rng.random((6, 1, 8, 8)) * 255).astype(np.uint8)
    masks = np.zeros((6, 8, 8), np.uint8)
    masks[3:, 2:4, 2:4] = 255
    np.savez(tmp_path / "test.npz", X=images, y=[0, 0, 0, 1, 1, 1], masks=masks)
    loaded = load_labelled_images(tmp_path / "test.npz")
    assert loaded.labels.tolist() == [False] * 3 + [True] * 3
    assert loaded.masks is not None and np.array_equal(loaded.masks, masks != 0)
    # the MVTec AD layout: good/ + a folder per defect, masks in ground_truth/<defect>/
    for name, rows in (("good", range(3)), ("scratch", range(3, 6))):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in rows:
            Image.fromarray(images[i, 0]).save(tmp_path / "folder" / name / f"{i:03d}.png")
    (tmp_path / "folder" / "ground_truth" / "scratch").mkdir(parents=True)
    for i in range(3, 6):
        Image.fromarray(masks[i]).save(
            tmp_path / "folder" / "ground_truth" / "scratch" / f"{i:03d}_mask.png"
        )
    folder = load_labelled_images(tmp_path / "folder")
    assert np.array_equal(folder.images, loaded.images)
    assert folder.labels.tolist() == loaded.labels.tolist()
    assert folder.masks is not None and np.array_equal(folder.masks, loaded.masks)


def test_labelled_images_refuse_what_cannot_be_judged(tmp_path):
    images = np.zeros((4, 8, 8), np.uint8)
    np.savez(tmp_path / "digits.npz", X=images, y=[3, 3, 5, 7])
    with pytest.raises(DataError, match="--normal-label"):
        load_labelled_images(tmp_path / "digits.npz")
    assert load_labelled_images(tmp_path / "digits.npz", normal_label=3).labels.tolist() == [
        False, False, True, True,
    ]  # fmt: skip
    with pytest.raises(DataError, match="no image has the normal label 4"):
        binary_labels([3, 5], normal_label=4)
    np.savez(tmp_path / "unlabelled.npz", X=images)
    with pytest.raises(DataError, match="has no labels"):
        load_labelled_images(tmp_path / "unlabelled.npz")
    np.savez(tmp_path / "masks.npz", X=images, y=[0, 1, 0, 1], masks=np.zeros((4, 7, 8)))
    with pytest.raises(DataError, match="masks are \\(4, 7, 8\\)"):
        load_labelled_images(tmp_path / "masks.npz")
    (tmp_path / "defects" / "scratch").mkdir(parents=True)
    with pytest.raises(DataError, match="no normal folder"):
        load_labelled_images(tmp_path / "defects")


def test_builtin_digits_and_pasted_anomalies():
    images, labels = builtin_digits(16)
    assert images.shape == (1797, 1, 16, 16) and set(labels.tolist()) == set(range(10))
    pasted, masks, kinds = paste_anomalies(images[:30], seed=3)
    assert kinds[:3] == ["noise", "blob", "patch"] and masks.shape == (30, 16, 16)
    assert all(masks[i].any() for i in range(30)), "every image has anomalous pixels"
    outside = ~masks[:, None]
    assert np.array_equal(pasted[outside], images[:30][outside]), "only the masked pixels change"
