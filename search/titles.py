"""Title search that forgives how people type titles. A query matches in tiers, best first: the whole
title (as written, without its year, or with a trailing article moved to the front); a title starting
with the query; containing it; every plain word of the query in any order ("godfather part 2");
the same words run together or split differently ("starwars"); only when nothing above matched, a
close spelling ("star wras"), closest first. Within a tier the most rated movie comes first, then the title,
then bundle order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

FUZZY_CUTOFF = 85
"""Least weighted ratio (0-100) for a close spelling; 85 takes one swapped or
wrong letter in a short title and leaves unrelated titles out."""

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


class TitleIndex:
    """Every title of a catalogue, prepared once for :meth:`find`."""

    def __init__(self, titles: Sequence[str], rating_counts: np.ndarray):
        forms = [title_forms(t) for t in titles]
        words = [plain_words(_YEAR.sub("", normalise(t))) for t in titles]
        self._forms, self._plain = forms, [" ".join(w) for w in words]
        self._joined = pd.Series(["\x00".join(f) for f in forms], dtype=object)
        self._words = pd.Series([f" {w} " for w in self._plain], dtype=object)
        # Within a tier: most rated, then title, then bundle order.
        self._rank = np.lexsort(
            (np.arange(len(titles)), [normalise(t) for t in titles], -np.asarray(rating_counts))
        )

    def find(self, query: str) -> np.ndarray:
        """Rows of the titles matching ``query``, best first (see the module's tiers)."""
        q = normalise(query)
        tier = np.full(len(self._plain), 99.0)
        contains = np.flatnonzero(self._joined.str.contains(q, regex=False).to_numpy())
        tier[contains] = [
            0 if q in forms else 1 if any(f.startswith(q) for f in forms) else 2
            for forms in (self._forms[r] for r in contains)
        ]
        words = plain_words(q)
        if words:
            every = np.ones(len(tier), dtype=bool)
            for word in words:
                every &= self._words.str.contains(f" {word} ", regex=False).to_numpy()
            tier[every & (tier > 3)] = 3
            # The query's letters with an optional space between any two, from a word's start to a word's end.
            spaced = " " + " ?".join(re.escape(c) for c in "".join(words)) + " "
            joined = self._words.str.contains(spaced, regex=True).to_numpy()
            tier[joined & (tier > 4)] = 4
            if (tier < 99).sum() == 0:
                close = process.extract(
                    " ".join(words), self._plain, scorer=fuzz.WRatio, score_cutoff=FUZZY_CUTOFF, limit=None
                )
                for _, score, row in close:  # closer spellings first within the tier
                    tier[row] = 5 + (100 - score) / 1000
        ranked = self._rank[np.argsort(tier[self._rank], kind="stable")]
        return ranked[tier[ranked] < 99]
