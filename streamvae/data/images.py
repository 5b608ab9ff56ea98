"""Image arrays: loading for training, and decoding ``.npy`` batches from the stream.

Images are ``(N, C, H, W)`` (or ``(N, H, W)`` for one channel), ``uint8`` (0-255) or
``float32`` (already in [0, 1]); the models see them flat, ``(N, C*H*W)`` float32 in [0, 1].
No pickle is ever loaded (``allow_pickle=False``); PNG folders are read with Pillow.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamvae.errors import DataError, PayloadDecodeError

F32 = npt.NDArray[np.float32]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True, slots=True)
class ImageShape:
    """``(C, H, W)`` of the images a model takes."""

    channels: int
    height: int
    width: int

    @property
    def pixels(self) -> int:
        """``C * H * W``."""
        return self.channels * self.height * self.width

    def as_tuple(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return (self.channels, self.height, self.width)


def to_unit(array: np.ndarray) -> F32:
    """``(N, C, H, W)`` / ``(N, H, W)`` uint8 or float images as float32 in [0, 1], 4-D.

    Raises:
        DataError: another dtype or rank, or float values outside [0, 1].
    """
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        msg = f"images must be (N, C, H, W) or (N, H, W), got shape {array.shape}"
        raise DataError(msg)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype.kind != "f":
        msg = f"images must be uint8 or float, got {array.dtype}"
        raise DataError(msg)
    out = array.astype(np.float32)
    if not np.isfinite(out).all() or out.min() < 0.0 or out.max() > 1.0:
        msg = "float images must be finite and in [0, 1]"
        raise DataError(msg)
    return out


def load_images(path: str | Path) -> tuple[F32, npt.NDArray[np.int64] | None]:
    """Training images from an ``.npy``, an ``.npz`` or a folder of PNG/JPEG files.

    An ``.npz`` holds ``X`` (or ``images``) and optionally ``y`` (or ``labels``); a folder's
    files are read in name order and must all have the same size.

    Returns:
        ``(N, C, H, W)`` float32 in [0, 1], and the labels when the file has them.

    Raises:
        DataError: unreadable, empty or inconsistent input.
    """
    source = Path(path)
    if source.is_dir():
        return _load_folder(source), None
    if not source.is_file():
        msg = f"image data {str(source)!r} does not exist"
        raise DataError(msg)
    try:
        if source.suffix == ".npy":
            return to_unit(np.load(source, allow_pickle=False)), None
        if source.suffix == ".npz":
            with np.load(source, allow_pickle=False) as npz:
                key = next((k for k in ("X", "images", "x") if k in npz.files), None)
                if key is None:
                    msg = f"{source.name} has no 'X' or 'images' array (has {npz.files})"
                    raise DataError(msg)
                label_key = next((k for k in ("y", "labels") if k in npz.files), None)
                labels = None if label_key is None else npz[label_key].astype(np.int64)
                return to_unit(npz[key]), labels
    except (ValueError, OSError) as exc:
        msg = f"cannot read images from {str(source)!r}: {exc}"
        raise DataError(msg) from exc
    msg = f"image data must be .npy, .npz or a folder of images, got {source.name!r}"
    raise DataError(msg)


def image_names(path: str | Path, count: int) -> list[str]:
    """What identifies each of the ``count`` images of ``path``.

    File names for a folder (in the order :func:`load_images` reads them), else the index.
    """
    source = Path(path)
    if source.is_dir():
        return [file.name for file in _image_files(source)]
    return [str(i) for i in range(count)]


def _load_folder(folder: Path) -> F32:
    files = _image_files(folder)
    if not files:
        msg = f"no PNG/JPEG images in {str(folder)!r}"
        raise DataError(msg)
    return _read_files(files, folder)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_files(files: list[Path], folder: Path) -> F32:
    """The files as ``(N, C, H, W)`` in [0, 1]; all must have one size."""
    from PIL import Image, UnidentifiedImageError

    arrays = []
    for file in files:
        try:
            with Image.open(file) as image:
                mode = "L" if image.mode in ("1", "L", "I", "I;16", "P") else "RGB"
                arrays.append(np.asarray(image.convert(mode)))
        except (OSError, UnidentifiedImageError) as exc:
            msg = f"cannot read image {file.name!r}: {exc}"
            raise DataError(msg) from exc
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        msg = f"images in {str(folder)!r} differ in size: {sorted(shapes)[:3]}"
        raise DataError(msg)
    stack = np.stack(arrays)
    if stack.ndim == 4:  # (N, H, W, C) -> (N, C, H, W)
        stack = stack.transpose(0, 3, 1, 2)
    return to_unit(np.ascontiguousarray(stack))


NORMAL_FOLDERS = ("good", "normal", "ok")
"""Label folders holding normal images in a labelled image folder (any other is anomalous)."""
MASK_FOLDERS = ("ground_truth", "masks")
"""Folders of a labelled image folder holding pixel masks rather than a label."""


@dataclass(frozen=True, slots=True)
class LabelledImages:
    """Images with image labels and, when known, pixel masks.

    Attributes:
        images: ``(N, C, H, W)`` float32 in [0, 1].
        labels: ``(N,)`` True for an anomalous image.
        masks: ``(N, H, W)`` True for an anomalous pixel, or None.
    """

    images: F32
    labels: npt.NDArray[np.bool_]
    masks: npt.NDArray[np.bool_] | None = None


def binary_labels(values: npt.ArrayLike, normal_label: int | None) -> npt.NDArray[np.bool_]:
    """Anomaly flags from labels: ``!= normal_label``, or 0/1 labels as they are.

    >>> binary_labels([3, 1, 3], normal_label=3).tolist()
    [False, True, False]

    Raises:
        DataError: labels other than 0/1 without ``normal_label``, or no normal image.
    """
    y = np.asarray(values).reshape(-1)
    if normal_label is not None:
        if not np.any(y == normal_label):
            msg = f"no image has the normal label {normal_label} (labels: {_some(y)})"
            raise DataError(msg)
        return np.asarray(y != normal_label)
    if not np.isin(y, (0, 1)).all():
        msg = (
            f"labels must be 0 (normal) / 1 (anomaly), got {_some(y)}: "
            "name the normal class with --normal-label"
        )
        raise DataError(msg)
    return np.asarray(y == 1)


def _some(y: np.ndarray) -> str:
    values = np.unique(y)
    shown = ", ".join(str(v) for v in values[:10])
    return shown + (", ..." if values.size > 10 else "")


def load_labelled_images(path: str | Path, *, normal_label: int | None = None) -> LabelledImages:
    """Labelled test images from an ``.npz`` or a folder of label folders.

    An ``.npz`` holds ``X`` (or ``images``), ``y`` (or ``labels``) and optionally
    ``masks`` ``(N, H, W)`` (non-zero = anomalous pixel). A folder holds one folder of
    PNG/JPEG files per label: ``good``, ``normal`` or ``ok`` are normal, any other name is
    an anomaly type; pixel masks, when given, sit in ``ground_truth/<label>/`` named like
    the image with or without a ``_mask`` suffix (the MVTec AD layout), and a normal image
    without one has none.

    Raises:
        DataError: unreadable data, no labels, masks of another size.
    """
    source = Path(path)
    if source.is_dir():
        return _labelled_folder(source)
    images, labels = load_images(source)
    if labels is None:
        msg = f"{source.name} has no labels: an .npz needs 'y' (or 'labels') beside 'X'"
        raise DataError(msg)
    if len(labels) != len(images):
        msg = f"{source.name}: {len(labels)} labels for {len(images)} images"
        raise DataError(msg)
    masks = None
    with np.load(source, allow_pickle=False) as npz:
        key = next((k for k in ("masks", "mask") if k in npz.files), None)
        if key is not None:
            masks = np.asarray(npz[key])
    if masks is not None:
        masks = _checked_masks(masks, images, source.name)
    return LabelledImages(images, binary_labels(labels, normal_label), masks)


def _checked_masks(masks: np.ndarray, images: F32, name: str) -> npt.NDArray[np.bool_]:
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    expected = (images.shape[0], *images.shape[2:])
    if masks.shape != expected:
        msg = f"{name}: masks are {masks.shape}, the images need {expected}"
        raise DataError(msg)
    return np.asarray(masks != 0)


def _labelled_folder(folder: Path) -> LabelledImages:
    labels = sorted(
        p for p in folder.iterdir() if p.is_dir() and p.name.lower() not in MASK_FOLDERS
    )
    if not labels:
        msg = f"{str(folder)!r} has no label folders (e.g. good/ and one per anomaly type)"
        raise DataError(msg)
    if not any(p.name.lower() in NORMAL_FOLDERS for p in labels):
        msg = f"{str(folder)!r} has no normal folder (one of {list(NORMAL_FOLDERS)})"
        raise DataError(msg)
    truth = next((folder / m for m in MASK_FOLDERS if (folder / m).is_dir()), None)
    parts, flags, masks = [], [], []
    for label in labels:
        files = _image_files(label)
        if not files:
            continue
        images = _read_files(files, label)
        parts.append(images)
        flags.append(np.full(len(images), label.name.lower() not in NORMAL_FOLDERS))
        if truth is not None:
            masks.append(_folder_masks(truth / label.name, files, images))
    if not parts:
        msg = f"no PNG/JPEG images in the label folders of {str(folder)!r}"
        raise DataError(msg)
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) != 1:
        msg = f"images in {str(folder)!r} differ in size: {sorted(shapes)[:3]}"
        raise DataError(msg)
    stacked_masks = np.concatenate(masks) if truth is not None else None
    return LabelledImages(np.concatenate(parts), np.concatenate(flags), stacked_masks)


def _folder_masks(folder: Path, files: list[Path], images: F32) -> npt.NDArray[np.bool_]:
    out = np.zeros((len(files), *images.shape[2:]), dtype=bool)
    for i, file in enumerate(files):
        for name in (f"{file.stem}_mask{file.suffix}", file.name, f"{file.stem}_mask.png"):
            if (folder / name).is_file():
                mask = _read_files([folder / name], folder)
                out[i] = _checked_masks(mask[:, :1], images[i : i + 1], name)[0]
                break
    return out


@dataclass(frozen=True, slots=True)
class ImageBatch:
    """A decoded image message: the sound images and the per-image problems.

    Attributes:
        images: ``(n, C*H*W)`` float32 in [0, 1], the images that passed every check.
        index: position of each of them in the message's array.
        ids: the id of every image of the message (from the ``ids`` header, else ``None``s).
        rejected: ``index -> error`` of images that failed a per-image check.
        count: images in the message.
    """

    images: F32
    index: list[int]
    ids: list[str | None]
    rejected: dict[int, PayloadDecodeError]
    count: int


def decode_image_batch(
    value: bytes | None,
    headers: dict[str, bytes],
    shape: ImageShape,
    *,
    max_bytes: int,
    max_images: int,
) -> ImageBatch:
    """Decode and check one ``.npy`` image message.

    Whole-message failures (size, content type, not an ``.npy``, dtype, shape, the ``ids``
    header) raise; a sound array with a bad image inside (NaN, values out of range) rejects
    that image only.

    Raises:
        PayloadDecodeError: ``too_large`` or ``invalid_image``.
    """
    array = _checked_array(value, headers, shape, max_bytes)
    n = array.shape[0]
    if n > max_images:
        detail = f"batch of {n} images exceeds max_records_per_message={max_images}"
        raise PayloadDecodeError(reason="too_large", detail=detail)
    ids = _ids(headers.get("ids"), n)
    flat = array.reshape(n, -1)
    if array.dtype == np.uint8:
        return ImageBatch(flat.astype(np.float32) / 255.0, list(range(n)), ids, {}, n)
    finite = np.isfinite(flat).all(axis=1)
    with np.errstate(invalid="ignore"):
        in_range = (flat >= 0.0).all(axis=1) & (flat <= 1.0).all(axis=1)
    rejected: dict[int, PayloadDecodeError] = {}
    for i in np.flatnonzero(~finite).tolist():
        rejected[i] = PayloadDecodeError(reason="non_finite", detail="a pixel is NaN or infinite")
    for i in np.flatnonzero(finite & ~in_range).tolist():
        detail = f"float32 pixels must be in [0, 1], got [{flat[i].min():.3g}, {flat[i].max():.3g}]"
        rejected[i] = PayloadDecodeError(reason="out_of_range", detail=detail)
    keep = np.flatnonzero(finite & in_range)
    return ImageBatch(np.ascontiguousarray(flat[keep]), keep.tolist(), ids, rejected, n)


def _checked_array(
    value: bytes | None, headers: dict[str, bytes], shape: ImageShape, max_bytes: int
) -> np.ndarray:
    """The message's array, 4-D, of the model's shape and a supported dtype."""
    if not value:
        raise PayloadDecodeError(reason="invalid_image", detail="empty message value")
    if len(value) > max_bytes:
        detail = f"message of {len(value)} bytes exceeds max_message_bytes={max_bytes}"
        raise PayloadDecodeError(reason="too_large", detail=detail)
    content_type = headers.get("content-type", b"application/x-npy")
    if content_type != b"application/x-npy":
        detail = f"content-type must be application/x-npy, got {content_type[:60]!r}"
        raise PayloadDecodeError(reason="invalid_image", detail=detail)
    array = _load_npy(value)
    if array.ndim == 3 and shape.channels == 1:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1:] != shape.as_tuple():
        want = f"(N, {shape.channels}, {shape.height}, {shape.width})"
        alt = f" or (N, {shape.height}, {shape.width})" if shape.channels == 1 else ""
        detail = f"expected images {want}{alt}, got {array.shape}"
        raise PayloadDecodeError(reason="invalid_image", detail=detail)
    if array.shape[0] == 0:
        raise PayloadDecodeError(reason="invalid_image", detail="an empty batch of images")
    if array.dtype not in (np.uint8, np.float32):
        detail = f"images must be uint8 or float32, got {array.dtype}"
        raise PayloadDecodeError(reason="invalid_image", detail=detail)
    return array


def _load_npy(value: bytes) -> np.ndarray:
    """The array of ``.npy`` bytes, its header checked before anything is allocated.

    A header may declare any shape: a 1 KiB message claiming ``(10**9, 3, 512, 512)`` would
    make ``np.load`` ask for terabytes. The declared size must equal the bytes present.
    """
    if not value.startswith(b"\x93NUMPY"):
        raise PayloadDecodeError(reason="invalid_image", detail="not an .npy array")
    shape, dtype, offset = _npy_header(value)
    declared = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if declared != len(value) - offset:
        detail = (
            f".npy header declares {dtype} {shape} ({declared} bytes) but the message carries "
            f"{len(value) - offset} bytes of data"
        )
        raise PayloadDecodeError(reason="invalid_image", detail=detail[:300])
    try:
        array = np.load(io.BytesIO(value), allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as exc:
        detail = f"unreadable .npy: {exc}"
        raise PayloadDecodeError(reason="invalid_image", detail=detail[:300]) from exc
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load of .npy bytes
        raise PayloadDecodeError(reason="invalid_image", detail="not a single .npy array")
    return array


def _npy_header(value: bytes) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """``(shape, dtype, data offset)`` from an ``.npy`` header (versions 1.0 and 2.0)."""
    stream = io.BytesIO(value)
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    try:
        version = np.lib.format.read_magic(stream)
        reader = readers.get(version)
        if reader is not None:
            shape, _, dtype = reader(stream)
    except Exception as exc:  # numpy's header parser raises many types on hostile input
        detail = f"unreadable .npy header: {type(exc).__name__}: {exc}"
        raise PayloadDecodeError(reason="invalid_image", detail=detail[:300]) from exc
    if reader is None:
        detail = f"unsupported .npy format version {version[0]}.{version[1]}"
        raise PayloadDecodeError(reason="invalid_image", detail=detail)
    if dtype.hasobject:
        raise PayloadDecodeError(reason="invalid_image", detail="object arrays are not images")
    return tuple(int(n) for n in shape), dtype, stream.tell()


def _ids(raw: bytes | None, n: int) -> list[str | None]:
    if raw is None:
        return [None] * n
    import json

    try:
        ids = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise PayloadDecodeError(reason="invalid_image", detail=f"'ids' header: {exc}") from exc
    if not isinstance(ids, list) or len(ids) != n:
        detail = f"'ids' header must be a JSON list of {n} ids"
        raise PayloadDecodeError(reason="invalid_image", detail=detail)
    if not all(isinstance(i, str | int) and not isinstance(i, bool) for i in ids):
        raise PayloadDecodeError(reason="invalid_image", detail="ids must be strings or integers")
    return [str(i) for i in ids]


def encode_npy(array: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes (what producers send)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def builtin_digits(size: int = 32) -> tuple[F32, npt.NDArray[np.int64]]:
    """The built-in 8x8 digits upsampled (nearest) to ``size`` x ``size``, in [0, 1].

    Returns:
        ``(1797, 1, size, size)`` float32 images and their digit labels.

    Raises:
        DataError: ``size`` not a multiple of 8.
    """
    import importlib.resources

    if size < 8 or size % 8:
        msg = f"size must be a multiple of 8, got {size}"
        raise DataError(msg)
    resource = importlib.resources.files("streamvae.data.builtin").joinpath("digits.npz")
    with importlib.resources.as_file(resource) as path, np.load(path, allow_pickle=False) as npz:
        images, labels = npz["X"], npz["y"].astype(np.int64)
    factor = size // 8
    up = np.kron(images, np.ones((factor, factor), np.uint8))
    return to_unit(up[:, None]), labels


ANOMALY_KINDS = ("noise", "blob", "patch")


def paste_anomalies(
    images: F32, *, seed: int = 0, kinds: tuple[str, ...] = ANOMALY_KINDS, size: float = 0.25
) -> tuple[F32, npt.NDArray[np.bool_], list[str]]:
    """Paste one local anomaly into each image; the ground-truth mask is known.

    ``noise``: a square of uniform noise; ``blob``: a bright Gaussian blob; ``patch``: a
    square cut from another image of the set (moved elsewhere). The square's side is
    ``size`` times the image side.

    Returns:
        The images ``(N, C, H, W)``, the masks ``(N, H, W)`` and the kind used per image.
    """
    rng = np.random.default_rng(seed)
    out = images.copy()
    n, _, h, w = images.shape
    side = max(round(size * min(h, w)), 2)
    masks = np.zeros((n, h, w), bool)
    used: list[str] = []
    yy, xx = np.mgrid[0:side, 0:side]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        r, c = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        region = out[i, :, r : r + side, c : c + side]
        if kind == "noise":
            region[...] = rng.uniform(0.0, 1.0, size=region.shape)
            masks[i, r : r + side, c : c + side] = True
        elif kind == "blob":
            centre, sigma = (side - 1) / 2.0, side / 4.0
            blob = np.exp(-((yy - centre) ** 2 + (xx - centre) ** 2) / (2 * sigma**2))
            region[...] = np.maximum(region, blob[None].astype(np.float32))
            masks[i, r : r + side, c : c + side] = blob > 0.1
        elif kind == "patch":
            j = int(rng.integers(0, n - 1))
            j += j >= i
            r2, c2 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            donor = images[j, :, r2 : r2 + side, c2 : c2 + side]
            changed = np.abs(donor - region).max(axis=0) > 0.05
            region[...] = donor
            masks[i, r : r + side, c : c + side] = changed
        else:
            msg = f"unknown anomaly kind {kind!r}; known: {ANOMALY_KINDS}"
            raise ValueError(msg)
        used.append(kind)
    return out, masks, used
