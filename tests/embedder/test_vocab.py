"""Vocabulary: id <-> row."""

import numpy as np
import pytest

from embedder.vocab import UnknownIdError, Vocabulary


def test_maps_ids_to_rows_and_back():
    vocab = Vocabulary(np.array([50, 7, 1000]), "movie")
    assert vocab.numbers(np.array([1000, 50, 7])).tolist() == [2, 0, 1]
    assert [vocab.term(r) for r in range(3)] == [50, 7, 1000]
    assert 7 in vocab and 8 not in vocab and "x" not in vocab


def test_unknown_ids_raise_a_key_error_naming_the_id_or_map_to_minus_one():
    vocab = Vocabulary.from_values(np.array([3, 1, 3, 2]), "user")
    assert vocab.ids.tolist() == [1, 2, 3]
    with pytest.raises(KeyError, match="unknown user 99"):
        vocab.number(99)
    with pytest.raises(UnknownIdError):
        vocab.numbers(np.array([1, 99]))
    assert vocab.numbers(np.array([1, 99, 0, 4]), missing="negative").tolist() == [0, -1, -1, -1]
    assert vocab.number(99, missing="none") is None


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="not unique"):
        Vocabulary(np.array([1, 2, 1]))
