"""Command line: ``python -m search build|recommend|recommend-all|similar|clusters`` (docs/design.md, "Command line").

Human-readable tables by default, ``--json`` for scripts.  User errors (unknown
id, bad ``k``, ambiguous or unknown title, missing or unbuilt bundle) print one
``error:`` line to stderr and exit 2, as argparse does for bad flags; never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedder import DEFAULT_BUNDLE
from embedder.checks import run_command, whole_number_arg

AMBIGUOUS_SHOWN = 15


class AmbiguousTitle(ValueError):
    """A title matches several movies; the message lists them with their ids."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m search``."""
    from search.index import INDEX_KINDS

    parser = argparse.ArgumentParser(prog="python -m search", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle folder (default: %(default)s)")
        return sub

    build = command("build", "add the movie index, cosine index and K-Means clusters to a bundle")
    build.add_argument("--clusters", type=whole_number_arg(1), default=10, help="K-Means clusters (default: %(default)s)")
    build.add_argument("--index", choices=INDEX_KINDS, default="flat", help="movie index: flat is exact (default: %(default)s)")
    build.add_argument("--recall", type=_recall, default=0.95, help="hnsw/ivf: raise the search depth until the measured recall@10 against exact search reaches this (default: %(default)s)")
    build.add_argument("--seed", type=whole_number_arg(0), default=0, help="random seed (default: %(default)s)")
    build.set_defaults(handler=run_build)

    def ranking(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("-k", type=whole_number_arg(1), default=10, help="how many (default: %(default)s)")
        sub.add_argument("--min-ratings", type=whole_number_arg(0), default=0, metavar="N", help="only movies with at least N ratings")
        sub.add_argument("--json", action="store_true", help="print JSON")

    recommend = command("recommend", "top-k movies for a user by predicted rating, or for a newcomer from their ratings")
    who = recommend.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=int, metavar="ID", help="MovieLens user id")
    who.add_argument("--rate", action="append", metavar='"MOVIE=RATING"', help='a newcomer\'s rating of a movie (id or title), e.g. --rate "Toy Story=5"; repeat it')
    who.add_argument("--ratings", type=Path, metavar="FILE.csv", help="a newcomer's ratings: a CSV with columns movie (id or title) or movie_id, and rating")
    recommend.add_argument("--include-seen", action="store_true", help="(--user) also return movies the user rated in training")
    ranking(recommend)
    recommend.set_defaults(handler=run_recommend, parser=recommend)

    every = command("recommend-all", "every user's top-k to a parquet file (user_id, rank, movie_id, score), for batch jobs")
    every.add_argument("-k", type=whole_number_arg(1), default=10, help="movies per user (default: %(default)s)")
    every.add_argument("--min-ratings", type=whole_number_arg(0), default=0, metavar="N", help="only movies with at least N ratings")
    every.add_argument("--out", type=Path, required=True, metavar="FILE.parquet", help="the parquet file to write (replaced when complete)")
    every.add_argument("--shard", type=_shard, default=None, metavar="I/N", help="write only the I-th of N contiguous user shards (1-based), e.g. one per job of an array")
    every.add_argument(
        "--workers", type=whole_number_arg(1), default=os.cpu_count() or 1, metavar="N",
        help="user blocks searched at once, each with one BLAS thread (default: the cores, %(default)s)",
    )
    every.add_argument("--quiet", action="store_true", help="no progress lines")
    every.set_defaults(handler=run_recommend_all)

    similar = command("similar", "movies like a movie (embeddings and who rated them, blended)")
    similar.add_argument("--movie", required=True, metavar='ID|"title"', help="MovieLens movie id, or (part of) a title")
    ranking(similar)
    similar.set_defaults(handler=run_similar)

    clusters = command("clusters", "the K-Means clusters, or one cluster's members")
    clusters.add_argument("--cluster", type=whole_number_arg(0), metavar="C", help="show this cluster and its members")
    clusters.add_argument("--limit", type=whole_number_arg(1), default=20, help="members shown with --cluster (default: %(default)s)")
    clusters.add_argument("--json", action="store_true", help="print JSON")
    clusters.set_defaults(handler=run_clusters)
    return parser


# --------------------------------------------------------------------------- output


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool]) -> str:
    """A plain text table; titles and other long text columns are cut at 48 characters."""
    cells = [[_fmt(v) if not isinstance(v, str) else (v if len(v) <= 48 else v[:47] + "…") for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _item_table(items: list[dict], score: str, extra: dict[str, Any] | None = None) -> str:
    headers = ["#", "movie_id", score] + list(extra or {}) + ["title", "genres", "ratings", "mean", "cluster"]
    right = [True, True, True] + [True] * len(extra or {}) + [False, False, True, True, True]
    rows = []
    for n, item in enumerate(items, 1):
        added = [fn(item) for fn in (extra or {}).values()]
        rows.append(
            [n, item["movie_id"], item["score"], *added, item["title"], "|".join(item["genres"])]
            + [item["rating_count"], item["mean_rating"], item["cluster"]]
        )
    return _table(headers, rows, right)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


# --------------------------------------------------------------------------- commands


def _recall(text: str) -> float:
    """An argparse type: a recall target in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def run_build(args: argparse.Namespace) -> int:
    """Build the search files of a bundle; progress on stderr, a summary on stdout."""
    from embedder.artifacts import earlier_versions_note
    from search.build import build
    from search.index import IndexConfig

    config = IndexConfig(kind=args.index, target_recall=args.recall, seed=args.seed)
    manifest = build(args.bundle, n_clusters=args.clusters, index=config, seed=args.seed, log=lambda s: print(s, file=sys.stderr))
    index, clusters = manifest["index"], manifest["clusters"]
    print(f"built {args.bundle}: index {index['kind']} (recall@10 {index['recall_at_10']}), {clusters['k']} clusters")
    note = earlier_versions_note(args.bundle)  # each build keeps the previous version: say how to reclaim the space
    if note:
        print(note, file=sys.stderr)
    return 0


def _load(args: argparse.Namespace):
    from search.recommender import Recommender

    return Recommender.load(args.bundle)


def run_recommend(args: argparse.Namespace) -> int:
    """Print a user's top-k movies (a trained user, or a newcomer folded in)."""
    if args.user is None and args.include_seen:
        args.parser.error("argument --include-seen: applies to --user only (a newcomer's rated movies are always left out)")
    rec = _load(args)
    if args.user is None:
        return _recommend_newcomer(rec, args)
    ids, scores = rec.recommend(args.user, k=args.k, exclude_seen=not args.include_seen, min_ratings=args.min_ratings)
    items = rec.catalogue.items(ids, scores)
    if args.json:
        _print_json({"user_id": args.user, "items": items})
        return 0
    seen = "seen movies included" if args.include_seen else "seen movies excluded"
    print(f"Top {len(items)} for user {args.user} ({rec.index_kind} index, {seen}); {_score_note(rec)}")
    print(_predicted_table(rec, items))
    return 0


def _score_note(rec) -> str:
    low, high = rec.bundle.rating_scale
    return f"score = raw predicted rating, pred = clipped to {low:g}-{high:g}"


def _predicted_table(rec, items: list[dict]) -> str:
    low, high = rec.bundle.rating_scale
    return _item_table(items, "score", {"pred": lambda item: min(max(item["score"], low), high)})


def _recommend_newcomer(rec, args: argparse.Namespace) -> int:
    """Fold the ``--rate`` / ``--ratings`` pairs in and print the newcomer's top-k."""
    catalogue = rec.catalogue
    pairs = _rating_file(catalogue, args.ratings) if args.ratings else [_rating_flag(catalogue, text) for text in args.rate]
    ids, scores = rec.recommend_for_ratings(pairs, k=args.k, min_ratings=args.min_ratings)
    items = catalogue.items(ids, scores)
    rated = [{"movie_id": movie_id, "rating": rating} for movie_id, rating in pairs]
    if args.json:
        _print_json({"ratings": rated, "fallback": not pairs, "items": items})
        return 0
    if not pairs:
        print(f"No ratings given: the average user's top {len(items)} among movies with at least {max(args.min_ratings, rec.fallback_min_ratings)} ratings")
    else:
        shown = ", ".join(f"{catalogue.movie(m)['title']} = {r:g}" for m, r in pairs)
        print(f"Top {len(items)} for a newcomer who rated {shown} (folded in, rated movies excluded); {_score_note(rec)}")
    print(_predicted_table(rec, items))
    return 0


def _rating_flag(catalogue, text: str) -> tuple[int, float]:
    """``"MOVIE=RATING"`` (MOVIE an id or a title) as ``(movie_id, rating)``."""
    movie, sep, rating = text.rpartition("=")
    if not sep or not movie.strip():
        raise ValueError(f'--rate {text!r}: expected "MOVIE=RATING", e.g. "Toy Story=5"')
    return resolve_movie(catalogue, movie), _rating_value(rating, f"--rate {text!r}")


def _rating_value(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: the rating must be a number, got {text.strip()!r}") from None


def _rating_file(catalogue, path: Path) -> list[tuple[int, float]]:
    """A newcomer's ratings from a CSV (columns ``movie`` or ``movie_id``, and ``rating``)."""
    import csv

    from embedder.vocab import UnknownIdError

    pairs = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            column = "movie_id" if "movie_id" in fields else "movie" if "movie" in fields else None
            if column is None or "rating" not in fields:
                raise ValueError(f"{path}: expected a header with columns movie (or movie_id) and rating, got {fields}")
            for line, row in enumerate(reader, start=2):
                try:
                    pairs.append((resolve_movie(catalogue, row[column] or ""), _rating_value(row["rating"] or "", "rating")))
                except UnknownIdError as err:
                    raise UnknownIdError(f"{path}, line {line}: {err}") from None
                except ValueError as err:
                    raise ValueError(f"{path}, line {line}: {err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    return pairs


def _shard(text: str):
    """An argparse type: ``I/N``."""
    from search.batch import Shard

    try:
        return Shard.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run_recommend_all(args: argparse.Namespace) -> int:
    """Write every user's (or one shard's) top-k to a parquet file."""
    from threadpoolctl import threadpool_limits

    from search.batch import Shard, write_recommendations

    rec = _load(args)
    shard = args.shard or Shard()
    # This command owns its process: with several workers each GEMM gets one BLAS
    # thread, so the workers' GEMMs and selects share the cores instead of
    # competing with BLAS's own threads (benchmarks/README.md, "Retrieval").
    blas = threadpool_limits(1, "blas") if args.workers > 1 else contextlib.nullcontext()
    with blas:
        done = write_recommendations(
            rec, args.out, k=args.k, min_ratings=args.min_ratings, shard=shard, progress=not args.quiet, workers=args.workers
        )
    part = f" (shard {shard.index + 1}/{shard.count})" if shard.count > 1 else ""
    print(f"wrote {done.rows:,} rows for {done.users:,} users{part} to {done.path} in {done.seconds:.1f}s")
    return 0


def resolve_movie(catalogue, text: str) -> int:
    """A ``--movie`` argument as a movie id: a known id, else a title.

    A title is taken when it names one movie: a single match, or a single exact
    match ("star wars" picks "Star Wars (1977)").  Several matches raise
    :class:`AmbiguousTitle` listing them; none raises the unknown-movie KeyError.
    """
    from embedder.vocab import UnknownIdError

    text = text.strip()
    if text.lstrip("-").isdigit() and int(text) in catalogue.row_of:
        return int(text)
    if not text:
        raise ValueError("--movie is empty")
    from search.titles import normalise, title_forms

    matches = catalogue.find_movies(text, limit=len(catalogue.movie_ids))
    if not matches:
        raise UnknownIdError(f"unknown movie {text!r}: no id or title matches")
    query = normalise(text)
    exact = [m for m in matches if query in title_forms(catalogue.movie(m)["title"])]
    if len(matches) == 1 or len(exact) == 1:
        return exact[0] if exact else matches[0]
    lines = [f"{m:>8}  {catalogue.movie(m)['title']}" for m in matches[:AMBIGUOUS_SHOWN]]
    more = f"\n  ... and {len(matches) - AMBIGUOUS_SHOWN} more" if len(matches) > AMBIGUOUS_SHOWN else ""
    raise AmbiguousTitle(f"{text!r} matches {len(matches)} movies; pass one id with --movie:\n" + "\n".join(lines) + more)


def run_similar(args: argparse.Namespace) -> int:
    """Print the movies most like one movie."""
    from search.similar import EMBEDDING_WEIGHT

    rec = _load(args)
    movie_id = resolve_movie(rec.catalogue, args.movie)
    ids, scores = rec.similar(movie_id, k=args.k, min_ratings=args.min_ratings)
    items = rec.catalogue.items(ids, scores)
    title = rec.catalogue.movie(movie_id)["title"]
    if args.json:
        _print_json({"movie_id": movie_id, "title": title, "items": items})
        return 0
    if not items:
        print(f"No similar movies for {title} (movie {movie_id}): it has no training ratings (and no learnt embedding).")
        return 0
    print(
        f"Movies like {title} (movie {movie_id}); score = {EMBEDDING_WEIGHT:g} x cosine of the embeddings"
        f" + {1 - EMBEDDING_WEIGHT:g} x cosine of who rated them in training"
    )
    print(_item_table(items, "score"))
    return 0


def run_clusters(args: argparse.Namespace) -> int:
    """Print the cluster table, or one cluster and its members."""
    from search.catalogue import Catalogue

    catalogue = Catalogue.load(args.bundle)  # the catalogue alone: no faiss
    summaries = catalogue.clusters()
    quality = {key: catalogue.bundle.manifest.get("clusters", {}).get(key) for key in ("k", "seed", "silhouette", "nmi_genres", "nmi_random")}
    if args.cluster is None:
        if args.json:
            _print_json({"quality": quality, "clusters": summaries})
            return 0
        print(
            f"{quality['k']} clusters (seed {quality['seed']}): silhouette {_fmt(quality['silhouette'])}, "
            f"NMI with genres {_fmt(quality['nmi_genres'])} vs {_fmt(quality['nmi_random'])} for a random labelling"
        )
        rows = [
            [s["cluster"], s["size"], s["mean_rating"], s["label"], "; ".join(m["title"] for m in s["top_movies"][:3])]
            for s in summaries
        ]
        print(_table(["cluster", "size", "mean", "label", "most rated"], rows, [True, True, True, False, False]))
        return 0
    members = catalogue.cluster_members(args.cluster)
    summary = summaries[args.cluster]
    if args.json:
        _print_json({**summary, "members": [catalogue.movie(m) for m in members]})
        return 0
    shown = [catalogue.movie(m) for m in members[: args.limit]]
    print(f"Cluster {args.cluster}: {summary['size']} movies, mean rating {_fmt(summary['mean_rating'])}, about {summary['label']}")
    genres = [[g["genre"], g["share"], g["catalogue_share"], g["lift"]] for g in summary["genres"][:8]]
    print(_table(["genre", "share", "catalogue", "lift"], genres, [False, True, True, True]))
    print(f"\nMost rated {len(shown)} of {len(members)}:")
    rows = [[n, m["movie_id"], m["title"], "|".join(m["genres"]), m["rating_count"], m["mean_rating"]] for n, m in enumerate(shown, 1)]
    print(_table(["#", "movie_id", "title", "genres", "ratings", "mean"], rows, [True, True, False, False, True, True]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print ``error: ...`` to stderr and return 2."""
    from embedder.bundle import BundleError
    from embedder.vocab import UnknownIdError

    args = build_parser().parse_args(argv)
    return run_command(args, (UnknownIdError, BundleError, ValueError, FileNotFoundError))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
