"""TrainConfig validation, its descriptions and its manifest round trip."""

import json

import pytest

from embedder.config import TrainConfig


def test_round_trips_through_json():
    config = TrainConfig(dim=16, epochs=5, lr=0.01, reg=0.2, seed=9)
    assert TrainConfig(**json.loads(json.dumps(config.model_dump()))) == config
    gibbs = TrainConfig(method="gibbs", sample_dim=4, sweeps=30, burn_in=5, refit=False, threads=0)
    assert TrainConfig(**json.loads(json.dumps(gibbs.model_dump()))) == gibbs
    assert TrainConfig(**json.loads(json.dumps(gibbs.model_dump()))) != TrainConfig()
    with pytest.raises(ValueError, match="frozen"):
        gibbs.dim = 3


def test_every_field_has_a_description():
    for name, field in TrainConfig.model_fields.items():
        assert field.description and len(field.description) > 20, name


@pytest.mark.parametrize(
    "field, value",
    [
        ("dim", 0),
        ("epochs", -1),
        ("batch_size", 1.5),
        ("lr", 0),
        ("reg", -0.1),
        ("val_fraction", 0.7),
        ("device", "tpu"),
        ("lr", float("nan")),
        ("method", "sgd"),
        ("sample_dim", 0),
        ("sweeps", 0),
        ("burn_in", -1),
        ("burn_in", 10_000),
        ("sample_init_std", 0),
        ("refit", "yes"),
        ("threads", -2),
        ("patience", True),
        ("lr", 10**400),
    ],
)
def test_bad_values_are_refused_with_the_field_named(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_one_method_settings_come_from_the_docstring_marks():
    from embedder.config import one_method_settings

    owners = one_method_settings()
    assert owners["epochs"] == owners["lr"] == "adam" and owners["sweeps"] == owners["burn_in"] == "gibbs"
    assert "dim" not in owners and "refit" not in owners  # read by both methods
