"""Feature schema (names, order) and the standard scaler stored in every tabular bundle."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streamvae.errors import PayloadDecodeError, SchemaMismatchError

F32 = npt.NDArray[np.float32]
NUMBER_TYPES = frozenset({int, float})  # exact types: bool (an int subclass) is not a number


@dataclass(frozen=True, slots=True)
class FeatureSchema:
    """The ordered feature names a model was trained on."""

    names: tuple[str, ...]
    _name_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_name_set", frozenset(self.names))
        if not self.names:
            msg = "a feature schema needs at least one feature"
            raise ValueError(msg)
        if len(set(self.names)) != len(self.names):
            dupes = sorted({n for n in self.names if self.names.count(n) > 1})
            msg = f"duplicate feature names {dupes}"
            raise ValueError(msg)

    @property
    def dim(self) -> int:
        """Number of features."""
        return len(self.names)

    @property
    def name_set(self) -> frozenset[str]:
        """The names as a set (``features.keys() == name_set`` checks a record at C speed)."""
        return self._name_set

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {"names": list(self.names)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureSchema:
        """Inverse of :meth:`to_dict`."""
        return cls(names=tuple(values["names"]))

    def vector(self, features: object) -> list[float]:
        """One record's features in schema order, type-checked.

        Args:
            features: a ``name -> number`` mapping, or a list of numbers in schema order.

        Returns:
            The values as floats (not yet checked for NaN/Inf: see :func:`finite_rows`).

        Raises:
            PayloadDecodeError: ``schema_mismatch`` for missing, extra or too few/many
                features; ``invalid_record`` for a value that is not a number.
        """
        # the hot path of the service: C-level checks first, a slow path only to explain
        if isinstance(features, dict):
            if features.keys() != self._name_set:
                raise self._mismatch(features)
            values = list(map(features.__getitem__, self.names))
        elif isinstance(features, list):
            if len(features) != len(self.names):
                detail = f"expected {len(self.names)} feature values, got {len(features)}"
                raise PayloadDecodeError(reason="schema_mismatch", detail=detail)
            values = features
        else:
            detail = f"'features' must be an object or a list, got {type(features).__name__}"
            raise PayloadDecodeError(reason="invalid_record", detail=detail)
        if not NUMBER_TYPES.issuperset(map(type, values)):
            name, value = next(
                (n, v)
                for n, v in zip(self.names, values, strict=True)
                if type(v) not in NUMBER_TYPES
            )
            detail = f"feature {name!r} must be a number, got {value!r:.40}"
            raise PayloadDecodeError(reason="invalid_record", detail=detail)
        return values

    def _mismatch(self, features: dict[str, object]) -> PayloadDecodeError:
        missing = [n for n in self.names if n not in features]
        if missing:
            return PayloadDecodeError(
                reason="schema_mismatch", detail=f"missing feature(s) {missing[:5]}"
            )
        extra = sorted(set(features) - self._name_set)
        return PayloadDecodeError(
            reason="schema_mismatch", detail=f"unexpected feature(s) {extra[:5]}"
        )

    def check_columns(self, columns: tuple[str, ...]) -> None:
        """Check a table's feature columns against the schema (order may differ).

        Raises:
            SchemaMismatchError: naming missing and unexpected columns.
        """
        missing = [n for n in self.names if n not in columns]
        extra = [c for c in columns if c not in self.names]
        if missing or extra:
            msg = f"feature columns do not match the model: missing {missing}, unexpected {extra}"
            raise SchemaMismatchError(msg)


def finite_rows(matrix: F32) -> npt.NDArray[np.bool_]:
    """``(n,)`` True where every value of the row is finite."""
    return np.asarray(np.isfinite(matrix).all(axis=1), dtype=np.bool_)


@dataclass(frozen=True, slots=True)
class StandardScaler:
    """Per-feature standardisation fitted on the training split: ``(x - mean) / scale``."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(cls, x: F32) -> StandardScaler:
        """Fit on ``x (n, d)``; constant features get scale 1 (so they stay finite).

        Raises:
            ValueError: empty or non-finite input.
        """
        if x.ndim != 2 or x.shape[0] == 0:
            msg = f"need a non-empty (n, d) matrix to fit a scaler, got shape {x.shape}"
            raise ValueError(msg)
        if not np.isfinite(x).all():
            msg = "cannot fit a scaler on NaN or infinite values"
            raise ValueError(msg)
        mean = x.astype(np.float64).mean(axis=0)
        std = x.astype(np.float64).std(axis=0)
        scale = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in scale))

    def transform(self, x: F32) -> F32:
        """``(x - mean) / scale`` as float32."""
        mean = np.asarray(self.mean, dtype=np.float32)
        scale = np.asarray(self.scale, dtype=np.float32)
        return ((x - mean) / scale).astype(np.float32, copy=False)

    def inverse_transform(self, z: F32) -> F32:
        """Back to raw units: ``z * scale + mean``."""
        mean = np.asarray(self.mean, dtype=np.float32)
        scale = np.asarray(self.scale, dtype=np.float32)
        return (z * scale + mean).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {"kind": "standard", "mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StandardScaler:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: lengths differ or a value is not finite / positive.
        """
        mean = tuple(float(v) for v in values["mean"])
        scale = tuple(float(v) for v in values["scale"])
        if len(mean) != len(scale):
            msg = f"scaler mean ({len(mean)}) and scale ({len(scale)}) lengths differ"
            raise ValueError(msg)
        if not all(math.isfinite(m) for m in mean) or not all(s > 0 for s in scale):
            msg = "scaler values must be finite with positive scales"
            raise ValueError(msg)
        return cls(mean, scale)


_CATEGORY_TYPES = frozenset({str, int})  # exact types: bool is not a category


@dataclass(frozen=True, slots=True)
class ContextSchema:
    """The context a conditional model reads: numeric values and categorical fields.

    In a message the context travels beside the features, ``"context": {"hour": 13,
    "channel": "web"}``. Numeric fields must be numbers; categorical fields strings or
    integers among the categories seen in training. Other keys in ``context`` are allowed
    (a segment field, say) and ignored by the model.

    Attributes:
        numeric: names of the numeric context fields.
        categorical: ``(name, categories)`` pairs; a value's code is its index.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _codes: dict[str, dict[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = self.names
        if not names:
            msg = "a context schema needs at least one field"
            raise ValueError(msg)
        if len(set(names)) != len(names):
            msg = f"duplicate context field names in {list(names)}"
            raise ValueError(msg)
        for name, categories in self.categorical:
            if not categories or len(set(categories)) != len(categories):
                msg = f"context field {name!r} needs distinct categories, got {categories[:5]}"
                raise ValueError(msg)
        codes = {name: {c: i for i, c in enumerate(cats)} for name, cats in self.categorical}
        object.__setattr__(self, "_codes", codes)

    @property
    def names(self) -> tuple[str, ...]:
        """Every context field: numeric first, then categorical."""
        return self.numeric + tuple(name for name, _ in self.categorical)

    @property
    def width(self) -> int:
        """Columns of the condition matrix: one per field."""
        return len(self.names)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """The number of categories of each categorical field."""
        return tuple(len(cats) for _, cats in self.categorical)

    def vector(self, context: object) -> list[float]:
        """One record's context as numeric values then category codes.

        Raises:
            PayloadDecodeError: ``schema_mismatch`` for a missing context or field or an
                unknown category; ``invalid_record`` for a value of the wrong type.
        """
        if not isinstance(context, dict):
            if context is None:
                detail = f"missing 'context' (the model needs {list(self.names)[:5]})"
                raise PayloadDecodeError(reason="schema_mismatch", detail=detail)
            detail = f"'context' must be an object, got {type(context).__name__}"
            raise PayloadDecodeError(reason="invalid_record", detail=detail)
        values: list[float] = []
        for name in self.numeric:
            value = self._field(context, name)
            if type(value) not in NUMBER_TYPES:
                detail = f"context field {name!r} must be a number, got {value!r:.40}"
                raise PayloadDecodeError(reason="invalid_record", detail=detail)
            values.append(value)  # type: ignore[arg-type]  # checked: int or float
        for name, categories in self.categorical:
            value = self._field(context, name)
            if type(value) not in _CATEGORY_TYPES:
                detail = f"context field {name!r} must be a string or integer, got {value!r:.40}"
                raise PayloadDecodeError(reason="invalid_record", detail=detail)
            code = self._codes[name].get(str(value))
            if code is None:
                detail = (
                    f"context field {name!r} value {str(value)!r:.40} was not seen in training "
                    f"({len(categories)} known categories, e.g. {list(categories[:3])})"
                )
                raise PayloadDecodeError(reason="schema_mismatch", detail=detail)
            values.append(float(code))
        return values

    @staticmethod
    def _field(context: dict[str, object], name: str) -> object:
        if name not in context:
            detail = f"missing context field {name!r}"
            raise PayloadDecodeError(reason="schema_mismatch", detail=detail)
        return context[name]

    def codes(self, name: str, values: list[str]) -> npt.NDArray[np.float32]:
        """Category codes of a categorical column (training and offline scoring).

        Raises:
            SchemaMismatchError: a value is not a known category.
        """
        known = self._codes[name]
        unknown = sorted({v for v in values if v not in known})
        if unknown:
            msg = f"context column {name!r} holds categories unseen in training: {unknown[:5]}"
            raise SchemaMismatchError(msg)
        return np.fromiter((known[v] for v in values), np.float32, count=len(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "numeric": list(self.numeric),
            "categorical": [{"name": n, "categories": list(c)} for n, c in self.categorical],
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ContextSchema:
        """Inverse of :meth:`to_dict`."""
        return cls(
            numeric=tuple(values.get("numeric", ())),
            categorical=tuple(
                (str(c["name"]), tuple(str(v) for v in c["categories"]))
                for c in values.get("categorical", ())
            ),
        )
