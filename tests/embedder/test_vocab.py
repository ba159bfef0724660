"""Vocabulary: id <-> row."""

import numpy as np
import pytest

from embedder.vocab import UnknownIdError, Vocabulary


def test_maps_ids_to_rows_and_back():
    vocab = Vocabulary(np.array([50, 7, 1000]), "movie")
    assert vocab.numbers(np.array([1000, 50, 7])).tolist() == [2, 0, 1]
    assert vocab.ids.tolist() == [50, 7, 1000]
    assert 7 in vocab and 8 not in vocab and "x" not in vocab


def test_unknown_ids_raise_a_key_error_naming_the_id_or_map_to_minus_one():
    vocab = Vocabulary.from_values(np.array([3, 1, 3, 2]), "user")
    assert vocab.ids.tolist() == [1, 2, 3]
    with pytest.raises(KeyError, match="unknown user 99"):
        vocab.number(99)
    with pytest.raises(UnknownIdError):
        vocab.numbers(np.array([1, 99]))
    assert vocab.numbers(np.array([1, 99, 0, 4]), missing="negative").tolist() == [0, -1, -1, -1]
    assert 99 not in vocab and 2 in vocab and 2**70 not in vocab


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="not unique"):
        Vocabulary(np.array([1, 2, 1]))


def test_int32_ids_as_loaded_map_to_int64_rows_and_ids():
    # embedder.data loads ids as int32 when they fit; the vocabulary widens them.
    values = np.array([7, 3, 7, 2**31 - 1], dtype=np.int32)
    vocab = Vocabulary.from_values(values, "movie")
    assert vocab.ids.dtype == np.int64 and vocab.ids.tolist() == [3, 7, 2**31 - 1]
    rows = vocab.numbers(values)
    assert rows.dtype == np.int64 and rows.tolist() == [1, 0, 1, 2]
    assert vocab.number(np.int32(3)) == 0 and np.int32(7) in vocab


@pytest.mark.parametrize("ids", [[5, 1, 9, 2], [3, 10**12, -4, 8], list(range(50, 0, -3))])
def test_numbers_match_a_dictionary_lookup(ids):
    # Dense, sparse, negative and huge ids: the lookup must agree with a plain dict, unknown ids included.
    vocab = Vocabulary(np.array(ids))
    by_id = {raw: row for row, raw in enumerate(ids)}
    queries = np.array(ids + [0, 4, -1, -4, 2**62, 10**12, max(ids) + 1, 51])
    expected = [by_id.get(int(q), -1) for q in queries]
    assert vocab.numbers(queries, missing="negative").tolist() == expected
