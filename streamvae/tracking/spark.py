"""Backfills on Spark: a registered feature-vector model as a Spark UDF, with its thresholds.

The UDF is MLflow's ``mlflow.pyfunc.spark_udf`` over the streamvae pyfunc, so every
executor loads the version's bundle once per Python worker and applies the calibration
recorded on that version (``streamvae calibrate``), as the service and ``streamvae score``
do. PySpark is optional (``pip install 'streamvae[spark]'`` and a Java runtime).

Example (a ``SparkSession`` ``spark`` and a DataFrame ``df`` of transactions)::

    from streamvae.tracking.spark import score_spark

    scored = score_spark(spark, df, "models:/fraud@champion")
    scored.select("id", "streamvae.score", "streamvae.is_anomaly").show()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

VERDICT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("score", "double"),
    ("threshold", "double"),
    ("p_value", "double"),
    ("severity", "string"),
    ("is_anomaly", "boolean"),
)
"""The fields of the struct column :func:`score_spark` adds (Spark SQL types)."""


def score_spark(
    spark: Any,
    frame: Any,
    model_uri: str,
    *,
    features: Sequence[str] | None = None,
    column: str = "streamvae",
) -> Any:
    """``frame`` with a struct column ``column`` of score, threshold, p-value and verdict.

    Args:
        spark: the ``SparkSession``.
        frame: a Spark DataFrame with the model's feature columns (any other columns are
            kept and passed through).
        model_uri: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/ID/model``
            of a feature-vector model (the registry must be reachable from the driver).
        features: the feature columns, in any order (default: the model signature's).
        column: the name of the added struct column.

    Raises:
        ModelLoadError: the model is not a calibrated feature-vector model.
    """
    import mlflow

    from streamvae.errors import ModelLoadError

    info = mlflow.models.get_model_info(model_uri)
    signature = info.signature
    if signature is None or signature.inputs is None:
        msg = f"{model_uri} has no input signature: not a streamvae feature-vector model"
        raise ModelLoadError(msg)
    names = list(features or (c.name for c in signature.inputs.inputs if c.name))
    result_type = ",".join(f"{name}:{kind}" for name, kind in VERDICT_COLUMNS)
    udf = mlflow.pyfunc.spark_udf(
        spark, model_uri, result_type=f"struct<{result_type}>", env_manager="local"
    )
    from pyspark.sql import functions as f

    return frame.withColumn(column, udf(f.struct(*[f.col(n) for n in names])))
