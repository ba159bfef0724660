"""The answers, shared by the pages and the API.

Each function takes the raw path value and the query parameters, checks them
with the state's request models (:mod:`web.params`), asks
:class:`search.Recommender` (ids and scores) and its :class:`search.Catalogue`
(movie rows, titles, clusters), and returns the API route's answer: a dict, or a
:class:`Ranked` list of movies that the API writes as JSON and the pages render
as a dict. So both areas answer the same request with the same data and the
same errors. (What the answers hold is declared in :mod:`web.openapi`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from embedder.config import one_method_settings
from search import NotBuiltError, UnknownIdError
from web import params
from web.state import state


@dataclass(frozen=True)
class Ranked:
    """An answer that is a list of movies: its own fields, then ``items`` built
    from ``ids`` and ``scores`` (None: every score is null)."""

    head: dict
    ids: np.ndarray | list[int]
    scores: np.ndarray | None = None

    def as_dict(self) -> dict:
        """The answer with its item rows (what the pages render)."""
        return {**self.head, "items": state().catalogue.items(self.ids, self.scores)}


def recommendations(raw_user_id: str, args: Mapping[str, str]) -> Ranked:
    """Top-k movies for a user by predicted rating (``score``: the raw prediction)."""
    st = state()
    user_id = params.parse_id(raw_user_id, "user")
    query = params.parse(st.requests.recommendations, args)
    ids, scores = st.rec.recommend(user_id, k=query.k, exclude_seen=not query.include_seen, min_ratings=query.min_ratings)
    return Ranked({"user_id": user_id, "k": query.k, "include_seen": query.include_seen, "min_ratings": query.min_ratings}, ids, scores)


def newcomer_recommendations(body: object) -> Ranked:
    """Top-k movies for someone not in the bundle, from the ratings in ``body``
    (folded in, no retraining); ``score`` is the raw predicted rating, rated movies
    are left out. No ratings: the average user's list (``fallback`` true)."""
    st = state()
    query = params.parse(st.requests.newcomer_body, body)
    pairs = [(r.movie_id, r.rating) for r in query.ratings]
    try:
        ids, scores = st.rec.recommend_for_ratings(pairs, k=query.k)
    except (UnknownIdError, ValueError) as err:  # an unknown movie or a rating off the scale: the body is wrong
        raise params.ParamError(str(err)) from None
    ratings = [{"movie_id": movie_id, "rating": rating} for movie_id, rating in pairs]
    return Ranked({"ratings": ratings, "k": query.k, "fallback": not pairs}, ids, scores)


def newcomer_from_titles(args) -> Ranked:
    """The newcomer page's answer: ``title`` and ``rating`` given in pairs (repeated
    query parameters); each title is taken as its best match (``find_movies``).
    Titles that match nothing are listed in ``not_found``; blank rows are skipped;
    a later row for the same movie replaces an earlier one."""
    st = state()
    query = params.parse(st.requests.newcomer_page, {**args.to_dict(), "title": args.getlist("title"), "rating": args.getlist("rating")})
    chosen: dict[int, float] = {}
    not_found, rows = [], []
    for n, title in enumerate(query.title):
        title = title.strip()[: st.max_query]
        if not title:
            continue
        rating = params.parse_number(query.rating[n] if n < len(query.rating) else "", f"rating {n + 1}")
        found = st.catalogue.find_movies(title, limit=1)
        if not found:
            not_found.append(title)
            continue
        chosen[found[0]] = rating
        rows.append({"query": title, "rating": rating, **st.catalogue.movie(found[0])})
    try:
        ids, scores = st.rec.recommend_for_ratings(chosen, k=query.k)
    except ValueError as err:  # a rating off the scale
        raise params.ParamError(str(err)) from None
    return Ranked({"rated": rows, "not_found": not_found, "k": query.k, "fallback": not chosen}, ids, scores)


def similar(raw_movie_id: str, args: Mapping[str, str]) -> Ranked:
    """The k movies most like one movie (``score``: search.similar's blend of the embeddings'
    cosine and who-rated-what's), itself excluded."""
    st = state()
    movie_id = params.parse_id(raw_movie_id, "movie")
    query = params.parse(st.requests.similar, args)
    ids, scores = st.rec.similar(movie_id, k=query.k, min_ratings=query.min_ratings)
    return Ranked({"movie_id": movie_id, "k": query.k, "min_ratings": query.min_ratings}, ids, scores)


def search(args: Mapping[str, str], required: bool = True) -> Ranked:
    """One page of the movies whose title matches ``q`` (forgiving: see
    ``search.titles``), best match first: ``limit`` of them from ``offset``;
    ``total`` counts every match and ``more`` says whether any come after this page;
    ``score`` is null."""
    st = state()
    query = params.parse(st.requests.search if required else st.requests.search_page, args)
    q, limit, offset = query.q, query.limit, query.offset
    matches = st.catalogue.find_movies(q, limit=len(st.catalogue.movie_ids)) if q else []
    head = {"query": q, "limit": limit, "offset": offset, "total": len(matches), "more": offset + limit < len(matches)}
    return Ranked(head, matches[offset : offset + limit])


def movie(raw_movie_id: str) -> dict:
    """One movie's details (``Catalogue.movie``)."""
    return state().catalogue.movie(params.parse_id(raw_movie_id, "movie"))


def user_ratings(user_id: int, limit: int) -> tuple[list[dict], int]:
    """A user's highest training ratings (``score``: the rating) and how many there are."""
    st = state()
    ids, ratings = st.catalogue.user_ratings(user_id)
    return st.catalogue.items(ids[:limit], ratings[:limit]), len(ids)


def browse() -> dict:
    """What the home page offers to browse: the most rated movies, the best rated
    (by mean training rating) among widely rated ones (:attr:`WebState.browse_choice`),
    and the clusters by name (empty before ``search build``)."""
    st = state()
    most, best, floor = st.browse_choice
    try:
        found = st.catalogue.clusters()
    except NotBuiltError:
        found = []
    return {
        "most_rated": st.catalogue.items(most),
        "best_rated": st.catalogue.items(best),
        "best_rated_floor": floor,
        "browse_clusters": [{"cluster": c["cluster"], "label": c["label"], "size": c["size"]} for c in found],
    }


def clusters() -> dict:
    """Every cluster's summary from ``clusters.json`` (404 before ``search build``)."""
    found = state().catalogue.clusters()
    return {"n_clusters": len(found), "clusters": found}


def cluster(raw_cluster: str, args: Mapping[str, str]) -> Ranked:
    """One cluster's summary and all its movies in the asked order; ``score`` is null."""
    st = state()
    c = params.parse_id(raw_cluster, "cluster")
    sort = params.parse(st.requests.cluster, args).sort
    members = st.catalogue.cluster_members(c, sort=sort)  # UnknownIdError (404) outside 0..n-1
    return Ranked({**st.catalogue.clusters()[c], "sort": sort}, members)


def settings_used(settings: Mapping) -> set[str]:
    """The settings the bundle's training method used (the page leaves out those that
    only the other method reads: :func:`embedder.config.one_method_settings`)."""
    method, owners = settings.get("method"), one_method_settings()
    return {name for name in settings if owners.get(name, method) == method}


def model() -> dict:
    """The model's figures, the manifest's metrics and settings, and the per-epoch history."""
    st = state()
    manifest = st.rec.bundle.manifest
    return {
        "summary": st.summary,
        "metrics": manifest.get("metrics") or {},
        "training": manifest.get("training") or {},
        "config": manifest.get("config") or {},
        "clusters": {key: value for key, value in (manifest.get("clusters") or {}).items() if key != "sizes"},
        "ranking": (manifest.get("evaluation") or {}).get("ranking") or {},
        "history": st.history,
    }
