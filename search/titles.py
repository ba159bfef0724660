"""Title search that forgives how people type titles, and says when it is sure.

A query matches in tiers, best first: 0 the whole title (as written, without its year, or with a trailing
article moved to the front); 1 a title starting with the query; 2 containing it (a query of one or two
letters: tiers 0 and 1 only); 3 every plain word of the query in any order ("godfather part 2"). Only when
none of those match, 4: the same words run together or split differently ("starwars"); and only when
nothing matched at all, a close spelling ("star wras", "Empire Strikes Bak"): tier ``5 + (100 -
similarity) / 100``. The similarity is rapidfuzz's ratio of the letters typed to a title's (articles kept),
or of the best part of a title longer than the query (partial ratio), scored over the
:data:`FUZZY_CANDIDATES` titles sharing the most letter trigrams with the query. Within a tier the most
rated movie comes first, then the title, then bundle order.

The first match is *clear*, and a person's title may be taken as that movie, when it is alone in its tier
(a close spelling: :data:`CLEAR_MARGIN` points ahead of the next) and it starts with the query or spells
the whole title within :data:`FUZZY_CUTOFF`; otherwise the person is asked to choose.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import reduce

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

FUZZY_CUTOFF = 85
"""Least similarity (0-100) for a close spelling: one or two wrong letters in a title of ten."""
FUZZY_CANDIDATES = 200
"""Titles sharing the most trigrams with the query that are scored for a close spelling."""
CLEAR_MARGIN = 5
"""Points of similarity by which a close spelling must beat the next one to be taken without asking."""

_NONE = 99.0  # the tier of a title that does not match
_NO_ROWS = np.empty(0, np.int64)
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_ARTICLE = re.compile(r"^(.*), (the|a|an|l'|le|la|les|il|el|der|die|das)$")
_WORD = re.compile(r"[^\W_]+")
_DROPPED = {"the", "a", "an", "and", "of", "&"}
_NUMBERS = dict(
    zip("zero one two three four five six seven eight nine ten eleven twelve".split(), map(str, range(13)))
)
_NUMBERS |= {"ii": "2", "iii": "3", "iv": "4", "vi": "6", "vii": "7", "viii": "8", "ix": "9"}
"""Number words and Roman numerals read as digits (single-letter numerals are left
alone: "I" and "X" are words in titles more often than numbers)."""


def normalise(text: str) -> str:
    """Lower case, whitespace collapsed."""
    return " ".join(str(text).lower().split())


def title_forms(title: str) -> tuple[str, ...]:
    """A title as written, without its year, and with a trailing article moved to the front.

    "Godfather, The (1972)" -> ("godfather, the (1972)", "godfather, the", "the godfather").
    """
    full = normalise(title)
    bare = _YEAR.sub("", full)
    moved = _ARTICLE.match(bare)
    return tuple(dict.fromkeys([full, bare] + ([f"{moved.group(2)} {moved.group(1)}"] if moved else [])))


def plain_words(text: str) -> list[str]:
    """The words that matter: lower case, no punctuation, no articles, numbers as digits."""
    words = (_NUMBERS.get(w, w) for w in _WORD.findall(str(text).lower()))
    return [w for w in words if w not in _DROPPED]


def _letters(text: str) -> str:
    """The letters and digits of a title's last form or of a query (a close spelling is judged on what was
    typed: articles kept, number words not read as digits)."""
    return "".join(_WORD.findall(_YEAR.sub("", normalise(text))))


def _trigrams(letters: str) -> list[str]:
    return list(dict.fromkeys(letters[i : i + 3] for i in range(len(letters) - 2)))


def _postings(keys_per_row: list[list[str]]) -> dict[str, np.ndarray]:
    """Each key -> the rows whose list holds it (ascending; each list without repeats)."""
    keys = pd.Series(keys_per_row, dtype=object).explode().dropna()
    rows = keys.index.to_numpy(np.int32)
    return {key: rows[at] for key, at in keys.groupby(keys.to_numpy()).indices.items()}


class TitleIndex:
    """Every title of a catalogue, prepared once for :meth:`match`: its forms, plain words and letters, and
    which titles hold each form, word and trigram (of the forms, the plain words run together, and the
    letters), so that a query only looks at the titles holding its rarest trigrams."""

    def __init__(self, titles: Sequence[str], rating_counts: np.ndarray):
        forms = [title_forms(t) for t in titles]
        words = [list(dict.fromkeys(plain_words(_YEAR.sub("", normalise(t))))) for t in titles]
        self._forms = ["\x00" + "\x00".join(f) + "\x00" for f in forms]
        self._spaced = [f" {' '.join(w)} " for w in words]
        self._letters = [_letters(f[-1]) for f in forms]  # "the godfather" -> "thegodfather"
        self._exact = _postings([list(f) for f in forms])
        self._starts = _postings([list(dict.fromkeys(x[:n] for x in f for n in (1, 2))) for f in forms])
        self._word_rows = _postings(words)
        self._form_grams = _postings([_trigrams(f) for f in self._forms])
        self._letter_grams = _postings([_trigrams(letters) for letters in self._letters])
        self._plain_grams = _postings([_trigrams("".join(w)) for w in words])  # what tier 4 searches
        # Within a tier: most rated, then title, then bundle order.
        ranked = np.lexsort(
            (np.arange(len(titles)), [normalise(t) for t in titles], -np.asarray(rating_counts))
        )
        self._place = np.argsort(ranked)

    def find(self, query: str) -> np.ndarray:
        """Rows of the titles matching ``query``, best first (see the module's tiers)."""
        return self.match(query)[0]

    def match(self, query: str) -> tuple[np.ndarray, bool]:
        """:meth:`find`'s rows, and whether the first is a clear match (the module says when)."""
        tier = self._tiers(normalise(query))
        matched = np.flatnonzero(tier < _NONE)
        ranked = matched[np.lexsort((self._place[matched], tier[matched]))]
        if not len(ranked) or len(ranked) > 1 and tier[ranked[1]] - tier[ranked[0]] < CLEAR_MARGIN / 100:
            return ranked, False
        whole = fuzz.ratio(_letters(query), self._letters[ranked[0]]) >= FUZZY_CUTOFF
        return ranked, bool(tier[ranked[0]] <= 1 or whole)

    def _tiers(self, q: str) -> np.ndarray:
        tier = np.full(len(self._letters), _NONE)
        if len(q) < 3:  # as good as every title holds one or two letters: only those starting with them
            tier[self._starts.get(q, _NO_ROWS)] = 1
        else:
            contains = [r for r in self._holding(self._form_grams, q) if q in self._forms[r]]
            tier[contains] = 2
            tier[[r for r in contains if f"\x00{q}" in self._forms[r]]] = 1
        tier[self._exact.get(q, [])] = 0
        words = plain_words(q)
        if words:
            every = reduce(np.intersect1d, [self._word_rows.get(w, _NO_ROWS) for w in words])
            tier[every] = np.minimum(tier[every], 3)
        if not words or (tier < _NONE).any():
            return tier
        # The query's letters with an optional space between any two, from a word's start to a word's end.
        spaced = re.compile(" " + " ?".join(re.escape(c) for c in "".join(words)) + " ")
        tier[
            [r for r in self._holding(self._plain_grams, "".join(words)) if spaced.search(self._spaced[r])]
        ] = 4
        return tier if (tier < _NONE).any() else self._close_spellings(_letters(q), tier)

    def _holding(self, postings: dict[str, np.ndarray], text: str) -> np.ndarray:
        """The rows that may hold ``text``: those holding its three rarest trigrams (all rows for a text
        shorter than three)."""
        grams = _trigrams(text)
        if not grams:
            return np.arange(len(self._letters))
        rarest = sorted((postings.get(g, _NO_ROWS) for g in grams), key=len)[:3]
        return reduce(lambda a, b: np.intersect1d(a, b, assume_unique=True), rarest)

    def _close_spellings(self, letters: str, tier: np.ndarray) -> np.ndarray:
        grams = [self._letter_grams[g] for g in _trigrams(letters) if g in self._letter_grams]
        if not grams:
            return tier
        shared = np.bincount(np.concatenate(grams), minlength=len(tier))
        rows = np.flatnonzero(shared >= max(1, (len(letters) - 2) // 3))
        rows = rows[np.argsort(-shared[rows], kind="stable")[:FUZZY_CANDIDATES]]
        choices = [self._letters[r] for r in rows]
        whole = process.cdist([letters], choices, scorer=fuzz.ratio)[0]
        part = process.cdist([letters], choices, scorer=fuzz.partial_ratio)[0]
        longer = np.array([len(c) > len(letters) + 2 for c in choices], bool)
        score = np.where(longer, np.maximum(whole, part), whole)
        close = score >= FUZZY_CUTOFF
        tier[rows[close]] = 5 + (100 - score[close]) / 100
        return tier
