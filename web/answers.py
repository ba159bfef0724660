"""The answers, shared by the pages and the API: each takes checked values (the request
models of :mod:`web.models`), asks :class:`search.Recommender` (ids and scores) and its
:class:`search.Catalogue` (movie rows, titles, clusters), and returns the API's answer as
a dict, which the pages render too. So both areas answer alike, errors included.
"""

from __future__ import annotations

from collections.abc import Mapping

from embedder.config import one_method_settings
from search import NotBuiltError
from web.state import state


def recommendations(user_id: int, query) -> dict:
    """Top-k movies for a user by predicted rating (``score``: the raw prediction)."""
    st = state()
    ids, scores = st.rec.recommend(
        user_id, k=query.k, exclude_seen=not query.include_seen, min_ratings=query.min_ratings
    )
    return {**query.model_dump(), "user_id": user_id, "items": st.catalogue.items(ids, scores)}


def newcomer(ratings, k: int) -> dict:
    """Top-k movies for someone not in the bundle, from their ratings (folded in, no
    retraining; rated movies left out). No ratings: the average user's list
    (``fallback`` true). ValueError or UnknownIdError for a bad rating or movie."""
    ids, scores = state().rec.recommend_for_ratings(ratings, k=k)
    return {"k": k, "fallback": not len(ratings), "items": state().catalogue.items(ids, scores)}


def similar(movie_id: int, query) -> dict:
    """The k movies most like one movie (``score``: search.similar's blend), itself excluded."""
    st = state()
    ids, scores = st.rec.similar(movie_id, k=query.k, min_ratings=query.min_ratings)
    return {"movie_id": movie_id, **query.model_dump(), "items": st.catalogue.items(ids, scores)}


def search(query) -> dict:
    """One page of the movies whose title matches ``q`` (forgiving: ``search.titles``),
    best match first; ``total`` counts every match, ``more`` says whether any follow."""
    catalogue = state().catalogue
    q, limit, offset = query.q, query.limit, query.offset
    matches = catalogue.find_movies(q, limit=len(catalogue.movie_ids)) if q else []
    page = catalogue.items(matches[offset : offset + limit])
    return {
        "query": q,
        "limit": limit,
        "offset": offset,
        "total": len(matches),
        "more": offset + limit < len(matches),
        "items": page,
    }


def browse() -> dict:
    """The home page's lists: the most rated movies, the best rated among widely rated
    ones, and the clusters by name (empty before ``search build``)."""
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
        "browse_clusters": [{key: c[key] for key in ("cluster", "label", "size")} for c in found],
    }


def clusters() -> dict:
    """Every cluster's summary (NotBuiltError, a 404, before ``search build``)."""
    found = state().catalogue.clusters()
    return {"n_clusters": len(found), "clusters": found}


def cluster(c: int, sort: str) -> dict:
    """One cluster's summary and all its movies in the asked order (UnknownIdError outside 0..n-1)."""
    catalogue = state().catalogue
    members = catalogue.cluster_members(c, sort=sort)
    return {**catalogue.clusters()[c], "sort": sort, "items": catalogue.items(members)}


def settings_used(settings: Mapping) -> set[str]:
    """The settings the bundle's training method used (the other method's are left out)."""
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
