"""The input kinds a bundle can hold: one registry entry per kind, looked up by its name.

A kind is what the model reads: feature vectors (``tabular``), KPI windows (``window``) or
images (``image``). Its name is the ``kind`` written in the bundle's ``preprocess.json``.
Loading, the compatibility check of a model swap, the probe, the MLflow pyfunc and the
service find everything kind-specific here instead of testing types:

- the **preprocessing** class (a :class:`Preprocess`): the input contract, read from and
  written to ``preprocess.json``, and what would break it (``input_change``);
- the **detector** class (a :class:`Detector`), built from a bundle, which scores inputs,
  holds the thresholds in force and can ``probe`` one typical input;
- the score kinds its bundles may threshold, and whether a neighbour index fits its inputs.

Adding a kind: write those two classes and add one :class:`InputKind` line to
``INPUT_KINDS`` (``docs/architecture.md`` walks through it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from streamvae.bundle.image import ImageDetector, ImagePreprocess
from streamvae.bundle.tabular import TabularDetector, TabularPreprocess
from streamvae.bundle.window import WindowDetector, WindowPreprocess
from streamvae.scoring.fusion import IMAGE_CHUNK, ROW_CHUNK
from streamvae.thresholds import ThresholdSet
from streamvae.types import SCORE_KINDS, WINDOW_SCORE_KINDS

if TYPE_CHECKING:  # pragma: no cover
    from streamvae.bundle.io import ModelBundle


class Preprocess(Protocol):
    """The input contract of a bundle: what its messages hold and how they are scaled."""

    KIND: ClassVar[str]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's input names (feature columns, window positions, pixels)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, with ``"kind": KIND``."""
        ...

    def input_change(self, old: Any) -> str | None:
        """Why messages would be read differently than under ``old`` (same kind), or ``None``."""
        ...


class Detector(Protocol):
    """A bundle's model ready to score, deterministically."""

    bundle: ModelBundle

    @property
    def threshold(self) -> ThresholdSet:
        """The thresholds in force (``NotCalibratedError`` without)."""
        ...

    def probe(self) -> npt.NDArray[np.float64]:
        """The score of one typical input (must be finite for the model to be served)."""
        ...


@dataclass(frozen=True, slots=True)
class InputKind:
    """Everything kind-specific a bundle needs, for one input kind.

    Attributes:
        name: the ``kind`` of ``preprocess.json``.
        label: what its messages are, for people ("feature vectors").
        preprocess: the preprocessing class (``from_dict`` reads ``preprocess.json``).
        detector: builds the detector of a bundle: ``detector(bundle, device=...)``.
        score_kinds: the scores its bundles may threshold.
        neighbour_dim: the width of a neighbour index's rows for a preprocessing, or
            ``None`` when no neighbour index fits this kind.
        neighbour_chunk: rows per distance computation of that index.
        complexity: whether a neighbour index may carry an input-complexity tail.
    """

    name: str
    label: str
    preprocess: type[Any]
    detector: Callable[..., Any]
    score_kinds: tuple[str, ...]
    neighbour_dim: Callable[[Any], int] | None = None
    neighbour_chunk: int = ROW_CHUNK
    complexity: bool = False

    def read(self, values: Mapping[str, Any]) -> Preprocess:
        """The preprocessing of ``preprocess.json`` values (``ValueError`` if invalid)."""
        preprocess: Preprocess = self.preprocess.from_dict(dict(values))
        return preprocess

    def build(self, bundle: ModelBundle, *, device: str = "cpu") -> Any:
        """The bundle's detector (``ModelLoadError`` when the weights do not fit)."""
        return self.detector(bundle, device=device)


TABULAR = InputKind(
    "tabular", "feature vectors", TabularPreprocess, TabularDetector, SCORE_KINDS,
    neighbour_dim=lambda p: p.schema.dim, neighbour_chunk=ROW_CHUNK,
)  # fmt: skip
WINDOW = InputKind("window", "KPI windows", WindowPreprocess, WindowDetector, WINDOW_SCORE_KINDS)
IMAGE = InputKind(
    "image", "images", ImagePreprocess, ImageDetector, SCORE_KINDS,
    neighbour_dim=lambda p: p.shape.pixels, neighbour_chunk=IMAGE_CHUNK, complexity=True,
)  # fmt: skip

INPUT_KINDS: dict[str, InputKind] = {kind.name: kind for kind in (TABULAR, WINDOW, IMAGE)}
"""The registry: ``preprocess.json``'s ``kind`` -> its :class:`InputKind`."""


def input_kind(preprocess: Preprocess | str) -> InputKind:
    """The registry entry of a preprocessing (or of a kind's name).

    Raises:
        ValueError: a kind the registry does not know.
    """
    name = preprocess if isinstance(preprocess, str) else preprocess.KIND
    try:
        return INPUT_KINDS[name]
    except KeyError:
        msg = f"unsupported preprocessing kind {name!r}; known: {sorted(INPUT_KINDS)}"
        raise ValueError(msg) from None


def read_preprocess(values: Mapping[str, Any]) -> Preprocess:
    """``preprocess.json`` of any registered kind.

    Raises:
        ValueError: unknown kind or invalid values.
    """
    return input_kind(str(values.get("kind"))).read(values)
