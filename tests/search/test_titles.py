"""Forgiving title search (search/titles.py): each tier with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from search.titles import TitleIndex, plain_words

TITLES = [
    "Star Wars (1977)",  # 0
    "Star Trek: First Contact (1996)",  # 1
    "Godfather: Part II, The (1974)",  # 2
    "Godfather, The (1972)",  # 3
    "Twelve Monkeys (1995)",  # 4
    "Monty Python and the Holy Grail (1974)",  # 5
    "It Could Happen to You (1994)",  # 6
    "Toy Story (1995)",  # 7
    "Schindler's List (1993)",  # 8
    "Spider-Man (2002)",  # 9
    "War, The (1994)",  # 10
    "Empire Strikes Back, The (1980)",  # 11
    "Mystery Science Theater 3000: The Movie (1996)",  # 12
    "Forrest Gump (1994)",  # 13
]
COUNTS = np.array([500, 300, 200, 400, 250, 150, 80, 450, 300, 100, 600, 350, 50, 420])


@pytest.fixture(scope="module")
def index():
    return TitleIndex(TITLES, COUNTS)


@pytest.mark.parametrize(
    "query, expected",
    [
        ("star wars", [0]),  # the whole title
        ("the godfather", [3, 2]),  # "Godfather, The" read with its article in front; then containing
        ("godfather part 2", [2]),  # every word, Roman numeral as a digit, punctuation ignored
        ("12 monkeys", [4]),  # a number word as a digit
        ("monty python holy grail", [5]),  # words in any order, "and the" dropped
        ("starwars", [0]),  # words run together
        ("spiderman", [9]),
        ("schindlers list", [8]),
        ("toy", [7]),  # not "It Could Happen to You": a run of letters must start and end at words
        ("Star Wras", [0]),  # a close spelling; Star Trek is not one
        ("xyzzy quux", []),
    ],
)
def test_each_tier_finds_what_people_type(index, query, expected):
    assert index.find(query).tolist() == expected


def test_close_spellings_only_when_nothing_else_matches(index):
    assert index.find("star").tolist() == [0, 1]  # prefixes; no fuzzy extras


def test_plain_words():
    assert plain_words("Godfather: Part II, The") == ["godfather", "part", "2"]
    assert plain_words("I, Robot") == ["i", "robot"]  # a lone I stays a word


@pytest.mark.parametrize(
    "query, expected",
    [
        ("Starwarz", 0),  # run together and a wrong letter: not "War, The", though it holds "war"
        ("Star Warz", 0),
        ("Empire Strikes Bak", 11),  # a letter missing
        ("Schindlers list", 8),  # no apostrophe
        ("Forest Gump", 13),
        ("godfather part ii", 2),
        ("the godfather", 3),  # the exact title, though Part II also starts with it
    ],
)
def test_a_clear_match_is_the_intended_film(index, query, expected):
    rows, clear = index.match(query)
    assert clear and rows[0] == expected


@pytest.mark.parametrize(
    "query, candidates",
    [
        ("godfather", [3, 2]),  # two films start with it: ask
        ("godfathr", [3, 2]),  # equally close spellings: ask
        ("Xyzzy movie", []),  # "movie" alone is no reason to offer Mystery Science Theater
        ("quux", []),
    ],
)
def test_unclear_queries_offer_candidates_and_never_a_stranger(index, query, candidates):
    rows, clear = index.match(query)
    assert rows.tolist() == candidates and not clear


def test_close_spellings_are_scored_on_the_whole_title_unless_the_title_is_longer():
    # "War" is inside "starwarz" but the title is shorter than the query: the whole-title ratio applies.
    index = TitleIndex(["War (2007)", "Star Wars (1977)"], np.array([10, 1]))
    assert index.find("starwarz").tolist() == [1]


def test_words_run_together_are_found_before_close_spellings_whatever_the_numbers():
    # "12angrymen" is "12 angry men" run together: tier 4, so "Angry Men", only a close spelling, stays out.
    index = TitleIndex(["Twelve Angry Men (1957)", "Angry Men (1990)"], np.array([10, 50]))
    assert index.find("12angrymen").tolist() == [0]
