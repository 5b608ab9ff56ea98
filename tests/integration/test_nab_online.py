"""What `bench nab` measures is what `serve` does: a real NAB series through the broker.

The series is produced to the input topic in file order (keyed by its name, so one
partition keeps its order); the service loads the bundle NAB trains for the file and
publishes every point's score. Each served score must equal the anomaly score the NAB
evaluation computed for the same point, including the warm-up of the stream state and the
one-score-per-incident suppression.
"""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from streamvae.bench.nab import NabSettings, file_bundle, run_file
from streamvae.bundle import save_bundle
from streamvae.data.nab import load_nab
from streamvae.scoring.nab import probationary_length
from streamvae.stream.tools import produce_all
from streamvae.thresholds import CalibrationSpec, calibrate_set
from tests.integration.kafka_helpers import Topics, read_json, running_service, serve_settings

FILE = "realAdExchange/exchange-3_cpm_results.csv"


@pytest.mark.timeout(300)
def test_served_scores_of_a_nab_series_equal_the_nab_evaluation(broker, nab_dir, tmp_path):
    (nab_file,) = load_nab(nab_dir, names=[FILE])
    settings = NabSettings(model="dcvae", epochs=30)
    offline = run_file(nab_file, settings)
    bundle, _ = file_bundle(nab_file, settings)  # the same training, as serve would load
    calibration = offline.fused[np.isfinite(offline.raw_score)]
    thresholds, _ = calibrate_set(
        calibration, CalibrationSpec(percentile=99.5), score_kind="stream"
    )
    save_bundle(bundle.with_threshold(thresholds), tmp_path / "bundle")

    topics = Topics.unique()
    serve = serve_settings(broker, topics, tmp_path / "bundle", tmp_path / "work", partitions=1)
    stamps = nab_file.timestamps_ms
    values = [
        orjson.dumps({"series": FILE, "ts": int(t), "value": float(v)})
        for t, v in zip(stamps, nab_file.values, strict=True)
    ]
    produce_all(broker, topics.input, values, key=lambda _: FILE.encode())
    with running_service(serve):
        records = read_json(broker, topics.scores, expected=len(values), partitions=1)
        time.sleep(0.5)
    served = {r["ts"]: r for r in records}
    assert len(served) == len(records) == len(values), "one record per point"
    probation = probationary_length(len(nab_file))
    scored = 0
    for i, ts in enumerate(stamps.tolist()):
        record = served[ts]
        if record["status"] == "scored":
            scored += 1
            if i >= probation:  # NAB does not score the probationary period
                assert record["score"] == pytest.approx(offline.anomaly_score[i], abs=1e-9), i
        else:  # warming up: NAB's anomaly score is 0 there
            assert i < probation or offline.anomaly_score[i] == 0.0, i
    assert scored > len(values) - probation
    assert offline.anomaly_score.max() > thresholds.default.value  # it does alert
