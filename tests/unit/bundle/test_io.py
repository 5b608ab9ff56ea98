from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from streamvae.bundle import TabularDetector, load_bundle, save_bundle
from streamvae.errors import ModelLoadError, NotCalibratedError, SchemaMismatchError
from tests.factories import make_anomalies, make_bundle, make_normal


def test_round_trip_gives_identical_scores(tmp_path, small_bundle):
    x = np.vstack([make_normal(50, seed=3), make_anomalies(10)])
    before = TabularDetector(small_bundle).score(x)
    path = save_bundle(small_bundle, tmp_path / "b")
    assert sorted(p.name for p in path.iterdir()) == [
        "calibration_scores.npz", "config.json", "meta.json", "preprocess.json", "threshold.json",
        "weights.pt",
    ]  # fmt: skip
    loaded = load_bundle(path)
    after = TabularDetector(loaded).score(x)
    for kind in ("neg_elbo", "recon_error", "kl", "recon_nll", "per_feature"):
        assert np.array_equal(getattr(before.scores, kind), getattr(after.scores, kind)), kind
    assert loaded.threshold.to_dict() == small_bundle.threshold.to_dict()
    assert np.array_equal(loaded.threshold.reference[""], small_bundle.threshold.reference[""])
    assert loaded.preprocess == small_bundle.preprocess


def test_scores_are_deterministic_and_chunking_does_not_change_them(small_bundle):
    x = make_normal(100, seed=5)
    a = TabularDetector(small_bundle).score(x).scores.neg_elbo
    b = TabularDetector(small_bundle, chunk_size=7).score(x).scores.neg_elbo
    assert np.allclose(a, b, rtol=1e-6)
    assert np.array_equal(a, TabularDetector(small_bundle).score(x).scores.neg_elbo)


def test_anomalies_score_higher(small_bundle):
    det = TabularDetector(small_bundle)
    normal = det.select(det.score(make_normal(200, seed=9)))
    odd = det.select(det.score(make_anomalies(200)))
    assert np.median(odd) > np.quantile(normal, 0.99)


def test_weights_file_is_a_plain_state_dict(tmp_path, small_bundle):
    path = save_bundle(small_bundle, tmp_path / "b")
    state = torch.load(path / "weights.pt", weights_only=True)
    assert set(state) == set(small_bundle.state_dict)


def test_pickled_object_in_weights_is_refused(tmp_path, small_bundle):
    path = save_bundle(small_bundle, tmp_path / "b")
    with (path / "weights.pt").open("wb") as f:
        pickle.dump({"x": object()}, f)
    with pytest.raises(ModelLoadError, match="cannot read weights"):
        load_bundle(path)


def test_save_refuses_to_overwrite_unless_asked(tmp_path, small_bundle):
    path = save_bundle(small_bundle, tmp_path / "b")
    with pytest.raises(FileExistsError):
        save_bundle(small_bundle, path)
    save_bundle(small_bundle, path, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle-")]


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        ("config.json", {"model": "nope"}, "unknown model"),
        ("config.json", {"score_kind": "nope"}, "score_kind"),
        ("meta.json", {"schema_version": 99}, "schema_version"),
        ("preprocess.json", {"kind": "audio"}, "unsupported preprocessing"),
        ("preprocess.json", {"kind": "image"}, "invalid model bundle"),
    ],
)
def test_invalid_bundles_are_refused(tmp_path, small_bundle, file, change, message):
    path = save_bundle(small_bundle, tmp_path / "b")
    values = json.loads((path / file).read_text())
    (path / file).write_text(json.dumps(values | change))
    with pytest.raises(ModelLoadError, match=message):
        load_bundle(path)


def test_missing_files_and_directories(tmp_path, small_bundle):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    path = save_bundle(small_bundle, tmp_path / "b")
    (path / "preprocess.json").unlink()
    with pytest.raises(ModelLoadError, match="missing preprocess.json"):
        load_bundle(path)


def test_version_drift_warns_or_fails_under_strict(tmp_path, small_bundle, caplog):
    path = save_bundle(small_bundle, tmp_path / "b")
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps(meta | {"torch_version": "0.0.1"}))
    load_bundle(path)
    assert "torch_version='0.0.1'" in caplog.text
    with pytest.raises(ModelLoadError, match="torch_version"):
        load_bundle(path, strict=True)


def test_uncalibrated_bundle_has_no_threshold():
    bundle = make_bundle(epochs=1, calibrated=False)
    with pytest.raises(NotCalibratedError, match="calibrate"):
        _ = TabularDetector(bundle).threshold


def test_wrong_width_is_a_schema_error(small_bundle):
    with pytest.raises(SchemaMismatchError, match="6 feature columns"):
        TabularDetector(small_bundle).score(np.zeros((2, 5), np.float32))


def test_threshold_for_another_score_kind_is_refused(small_bundle):
    from dataclasses import replace

    other = replace(small_bundle.threshold.default, score_kind="kl")
    with pytest.raises(ValueError, match="score 'kl'"):
        small_bundle.with_threshold(replace(small_bundle.threshold, default=other))


@pytest.mark.parametrize("extra", ["model.pkl", "hook.py", "__init__.py"])
def test_a_bundle_with_unexpected_files_is_refused(tmp_path, small_bundle, extra):
    path = save_bundle(small_bundle, tmp_path / "b")
    (path / extra).write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(
        ModelLoadError, match=r"unexpected file\(s\) \['" + extra.replace(".", r"\.")
    ):
        load_bundle(path)


@pytest.fixture(scope="module")
def fused_bundle():
    return make_bundle(fused=True)


def test_a_fused_bundle_round_trips_with_its_neighbour_index(tmp_path, fused_bundle):
    x = np.vstack([make_normal(50, seed=3), make_anomalies(10)])
    before = TabularDetector(fused_bundle).score(x).scores
    path = save_bundle(fused_bundle, tmp_path / "b")
    assert (path / "neighbours.npy").is_file()
    loaded = load_bundle(path)
    assert loaded.score_kind == "fused"
    after = TabularDetector(loaded).score(x).scores
    for kind in ("neg_elbo", "neighbour", "fused"):
        assert np.array_equal(before.select(kind), after.select(kind)), kind
    assert np.array_equal(loaded.fusion.index.rows, fused_bundle.fusion.index.rows)
    assert loaded.fusion.to_dict() == fused_bundle.fusion.to_dict()
    # anomalies rank above normals on the fused score, as on its parts
    assert before.fused[50:].min() > np.median(before.fused[:50])


def test_fused_scores_do_not_depend_on_chunking(fused_bundle):
    x = make_normal(100, seed=6)
    det = TabularDetector(fused_bundle)
    a = det.score(x).scores
    b = TabularDetector(fused_bundle, chunk_size=7).score(x).scores
    assert np.array_equal(a.fused, b.fused)
    # the neighbour distance is the same bits whatever batch a row arrives in
    threes = [det.score(x[i : i + 3]).scores.neighbour for i in range(0, 100, 3)]
    assert np.array_equal(a.neighbour, np.concatenate(threes))


def test_a_column_major_matrix_scores_the_same_bits(fused_bundle):
    """pandas' and polars' ``to_numpy`` give column-major matrices; the pyfunc and the CLI
    must not score a row differently because of it (they did, by up to 2e-4)."""
    x = make_normal(300, seed=8).astype(np.float32)
    det = TabularDetector(fused_bundle)
    by_rows = det.score(np.ascontiguousarray(x)).scores
    by_columns = det.score(np.asfortranarray(x)).scores
    assert np.array_equal(by_rows.fused, by_columns.fused)
    assert np.array_equal(by_rows.neg_elbo, by_columns.neg_elbo)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("wrong_width", "must be float32"),
        ("missing_rows", "cannot read neighbours.npy"),
        ("no_fusion", "needs the model's neighbour index"),
        ("complexity_tail", "a complexity tail is for images"),
        ("bad_view", "positive factors"),
    ],
)
def test_a_broken_neighbour_index_is_refused(tmp_path, fused_bundle, breakage, message):
    path = save_bundle(fused_bundle, tmp_path / "b")
    if breakage == "wrong_width":
        np.save(path / "neighbours.npy", np.zeros((5, 2), dtype=np.float32))
    elif breakage == "missing_rows":
        (path / "neighbours.npy").unlink()
    else:
        config = json.loads((path / "config.json").read_text())
        if breakage == "no_fusion":
            del config["fusion"]
        elif breakage == "bad_view":
            view = config["fusion"]["views"][0]
            view["factors"] = [-1.0] * len(view["factors"])
        else:
            config["fusion"]["complexity_tail"] = config["fusion"]["elbo_tail"]
        (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=message):
        load_bundle(path)


def test_a_plain_bundle_says_why_it_has_no_fused_score(small_bundle):
    scores = TabularDetector(small_bundle).score(make_normal(5)).scores
    assert scores.available() == ("neg_elbo", "recon_error", "kl", "recon_nll")
    with pytest.raises(ValueError, match="no neighbour index"):
        scores.select("fused")
