"""Which bundles may replace the served one live."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from streamvae.bundle import check_replacement, probe
from streamvae.bundle.tabular import TabularPreprocess
from streamvae.data.schema import FeatureSchema
from streamvae.errors import ModelLoadError
from tests.factories import feature_names, make_bundle, make_kpi_bundle


@pytest.fixture(scope="module")
def other_seed():
    return make_bundle(seed=3, epochs=5, percentile=95.0)


def test_same_features_another_training_is_accepted(small_bundle, other_seed):
    check_replacement(small_bundle, other_seed)
    assert probe(other_seed).threshold.default.percentile == 95.0


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (feature_names(6)[::-1], "reordered"),
        ((*feature_names(5), "extra"), "added ['extra'], removed ['x5']"),
    ],
)
def test_a_changed_feature_schema_is_refused(small_bundle, names, expected):
    pre = small_bundle.preprocess
    assert isinstance(pre, TabularPreprocess)
    changed = dataclasses.replace(
        small_bundle, preprocess=dataclasses.replace(pre, schema=FeatureSchema(names))
    )
    with pytest.raises(ModelLoadError, match="feature schema changed") as err:
        check_replacement(small_bundle, changed)
    assert expected in str(err.value)


def test_fewer_features_are_refused(small_bundle):
    with pytest.raises(ModelLoadError, match="feature schema changed"):
        check_replacement(small_bundle, make_bundle(d=5, epochs=2))


def test_an_uncalibrated_bundle_is_refused(small_bundle):
    with pytest.raises(ModelLoadError, match="no threshold"):
        check_replacement(small_bundle, make_bundle(epochs=2, calibrated=False))


def test_a_kpi_bundle_cannot_replace_a_feature_model(small_bundle):
    kpi = make_kpi_bundle(window_len=16, epochs=2)
    with pytest.raises(ModelLoadError, match="input kind changed"):
        check_replacement(small_bundle, kpi)
    check_replacement(kpi, make_kpi_bundle(window_len=16, epochs=2, seed=1))
    with pytest.raises(ModelLoadError, match="window spec changed"):
        check_replacement(kpi, make_kpi_bundle(window_len=8, epochs=2))
    assert probe(kpi).preprocess.spec.window_len == 16


def test_weights_that_score_nan_are_refused(small_bundle):
    broken = {k: torch.full_like(v, float("nan")) for k, v in small_bundle.state_dict.items()}
    with pytest.raises(ModelLoadError, match="not finite"):
        probe(dataclasses.replace(small_bundle, state_dict=broken))


def test_image_bundles_round_trip_and_refuse_another_shape(tmp_path):
    import numpy as np

    from streamvae.bundle import load_bundle, save_bundle
    from streamvae.bundle.image import ImageDetector
    from tests.factories import digit_split, make_image_bundle

    bundle = make_image_bundle(epochs=3)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "img"))
    assert loaded.preprocess == bundle.preprocess
    images = digit_split(16)[1][:10].reshape(10, -1)
    # the default image score is fused: the index and all three tails travel with it
    assert loaded.score_kind == "fused" and loaded.fusion is not None
    assert loaded.fusion.to_dict() == bundle.fusion.to_dict()  # type: ignore[union-attr]
    assert loaded.fusion.complexity_tail is not None
    before, after = ImageDetector(bundle).score(images), ImageDetector(loaded).score(images)
    for kind in ("neg_elbo", "neighbour", "fused"):
        assert np.array_equal(before.select(kind), after.select(kind))
    # the neighbour distance is the same bits whatever batch an image arrives in
    threes = [ImageDetector(loaded).score(images[i : i + 3]).neighbour for i in range(0, 10, 3)]
    assert np.array_equal(after.neighbour, np.concatenate(threes))
    check_replacement(bundle, make_image_bundle(epochs=2, seed=1))
    with pytest.raises(ModelLoadError, match="image shape changed"):
        check_replacement(bundle, make_image_bundle(size=24, epochs=2))
    with pytest.raises(ModelLoadError, match="input kind changed: images -> feature vectors"):
        check_replacement(bundle, make_bundle(epochs=2))
    assert probe(bundle).preprocess.shape.height == 16
