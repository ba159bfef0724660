"""TrainConfig validation and its manifest round trip."""

import json

import pytest

from embedder.config import TrainConfig


def test_round_trips_through_json():
    config = TrainConfig(dim=16, epochs=5, lr=0.01, reg=0.2, seed=9)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "field, value",
    [("dim", 0), ("epochs", -1), ("batch_size", 1.5), ("lr", 0), ("reg", -0.1), ("val_fraction", 0.7), ("device", "tpu"), ("lr", float("nan"))],
)
def test_bad_values_are_refused_with_the_field_named(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_unknown_fields_are_refused():
    with pytest.raises(ValueError, match="unknown config fields"):
        TrainConfig.from_dict({"dim": 4, "dimension": 4})
