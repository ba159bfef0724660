"""Command line: ``python -m search build|recommend|recommend-all|similar|clusters``.

Human-readable tables by default, ``--json`` for scripts. User errors (unknown id, bad ``k``, ambiguous or
unknown title, a bad rating file, missing or unbuilt bundle) print one ``error:`` line naming the flag, file
or line at hand to stderr and exit 2, as argparse does for bad flags; never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from embedder import DEFAULT_BUNDLE
from embedder.checks import run_command, whole_number_arg

DEFAULT = " (default: %(default)s)"
ORDERS = ("relevance", "rating")  # search.recommender.ORDERS, repeated so that --help need not import faiss
ORDER_FLAGS = ("-k", "--min-ratings", "--order")
DETAILS = "genres,ratings,mean,cluster"


def _fraction(text: str) -> float:
    """An argparse type: a recall target in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _shard(text: str):
    """An argparse type: ``I/N`` (:class:`search.batch.Shard`)."""
    from search.batch import Shard

    try:
        return Shard.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m search``."""
    parser = argparse.ArgumentParser(prog="python -m search", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    shared = {
        "-k": dict(type=whole_number_arg(1), default=10, help="how many movies" + DEFAULT),
        "--min-ratings": dict(
            type=whole_number_arg(0), default=0, metavar="N", help="movies with N+ ratings"
        ),
        "--json": dict(action="store_true", help="print JSON"),
        "--order": dict(
            choices=ORDERS,
            default="relevance",
            help="relevance (what you would watch and like) or predicted rating" + DEFAULT,
        ),
    }

    def command(name: str, handler, help: str, *flags: str) -> argparse.ArgumentParser:
        """A sub-command with ``--bundle`` and the ``shared`` ``flags``."""
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler, parser=sub)
        sub.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle folder" + DEFAULT)
        for flag in flags:
            sub.add_argument(flag, **shared[flag])
        return sub

    build = command("build", run_build, "add the movie index, clusters and similar-movie table to a bundle")
    build.add_argument("--clusters", type=whole_number_arg(1), default=10, help="K-Means clusters" + DEFAULT)
    build.add_argument(
        "--index", choices=("flat", "hnsw", "ivf"), default="flat", help="flat is exact" + DEFAULT
    )
    build.add_argument(
        "--recall", type=_fraction, default=0.95, help="hnsw/ivf: recall@10 to reach" + DEFAULT
    )
    build.add_argument("--seed", type=whole_number_arg(0), default=0, help="random seed" + DEFAULT)
    recommend = command("recommend", run_recommend, "top-k movies for a user or a newcomer", *shared)
    recommend.add_argument(
        "--include-seen", action="store_true", help="(--user) also movies rated in training"
    )
    # Not a required group: argparse would name the group rather than a mistyped flag (``--users 1``).
    who = recommend.add_mutually_exclusive_group()
    who.add_argument("--user", type=int, metavar="ID", help="MovieLens user id")
    who.add_argument(
        "--rate", action="append", metavar='"MOVIE=RATING"', help='e.g. "Toy Story=5"; repeat it'
    )
    who.add_argument("--ratings", type=Path, metavar="FILE.csv", help="CSV: movie (or movie_id), rating")
    every = command("recommend-all", run_recommend_all, "every user's top-k to a parquet file", *ORDER_FLAGS)
    every.add_argument(
        "--out", type=Path, required=True, metavar="FILE.parquet", help="written when complete"
    )
    every.add_argument("--shard", type=_shard, metavar="I/N", help="only the I-th of N user shards (1-based)")
    cpus = os.cpu_count() or 1
    every.add_argument(
        "--workers", type=whole_number_arg(1), default=cpus, metavar="N", help="threads" + DEFAULT
    )
    every.add_argument("--quiet", action="store_true", help="no progress lines")
    similar = command("similar", run_similar, "movies like a movie", "-k", "--min-ratings", "--json")
    similar.add_argument(
        "--movie", required=True, metavar='ID|"title"', help="movie id, or (part of) a title"
    )
    clusters = command("clusters", run_clusters, "the K-Means clusters, or one cluster's members", "--json")
    clusters.add_argument("--cluster", type=whole_number_arg(0), metavar="C", help="this cluster's members")
    clusters.add_argument("--limit", type=whole_number_arg(1), default=20, help="with --cluster" + DEFAULT)
    return parser


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(headers: str, rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table (``headers`` comma-separated): numbers to the right, text cut at 48 characters."""
    headers = headers.split(",")
    right = [all(not isinstance(r[i], str) for r in rows) for i in range(len(headers))]
    cells = [[v if len(v) <= 48 else v[:47] + "…" for v in map(_fmt, row)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _item_table(items: list[dict], headers: str, clip: tuple[float, float] = (-math.inf, math.inf)) -> str:
    """Numbered movie rows (:meth:`search.Catalogue.items`) in the ``headers`` columns; ``pred`` is the score
    clipped to ``clip``, the rating scale."""
    cell = {
        "pred": lambda i: min(max(i["score"], clip[0]), clip[1]),
        "genres": lambda i: "|".join(i["genres"]),
        "ratings": lambda i: i["rating_count"],
        "mean": lambda i: i["mean_rating"],
        "because": lambda i: "; ".join(b["title"] for b in i["because"]),
    }
    rows = [[n] + [cell.get(h, itemgetter(h))(i) for h in headers.split(",")] for n, i in enumerate(items, 1)]
    return _table("#," + headers, rows)


def _print_json(obj: Any) -> int:
    print(json.dumps(obj, indent=2))
    return 0


def _load(args: argparse.Namespace):
    from search.recommender import Recommender

    return Recommender.load(args.bundle)


def run_build(args: argparse.Namespace) -> int:
    """Build the search files of a bundle; progress on stderr, a summary on stdout."""
    from embedder.artifacts import earlier_versions_note
    from search.build import build
    from search.index import IndexConfig

    config = IndexConfig(kind=args.index, target_recall=args.recall, seed=args.seed)
    manifest = build(args.bundle, args.clusters, config, args.seed, log=lambda s: print(s, file=sys.stderr))
    index, k = manifest["index"], manifest["clusters"]["k"]
    print(f"built {args.bundle}: index {index['kind']} (recall@10 {index['recall_at_10']}), {k} clusters")
    note = earlier_versions_note(args.bundle)  # each build keeps the previous version: how to reclaim it
    if note:
        print(note, file=sys.stderr)
    return 0


def run_recommend(args: argparse.Namespace) -> int:
    """Print a user's top-k movies (a trained user, or a newcomer folded in)."""
    if args.user is None and args.rate is None and args.ratings is None:
        args.parser.error("one of the arguments --user --rate --ratings is required")
    if args.user is None and args.include_seen:
        args.parser.error(
            "argument --include-seen: applies to --user only (a newcomer's rated movies are left out)"
        )
    rec = _load(args)
    low, high = rec.bundle.rating_scale
    order = rec.order_of(args.order)
    if args.user is not None:
        answer = rec.recommend(args.user, args.k, not args.include_seen, args.min_ratings, order)
        items = rec.items(answer, rec.rated_rows(args.user))
        head = {"user_id": args.user}
        shown = "seen movies included" if args.include_seen else "seen movies excluded"
        title = f"Top {len(items)} for user {args.user} ({rec.index_kind} index, {shown})"
    else:
        pairs = _newcomer_ratings(rec.catalogue, args, (low, high))
        answer = rec.recommend_for_ratings(pairs, args.k, args.min_ratings, order)
        items = rec.items(answer, [rec.catalogue.row(m) for m, _ in pairs])
        head = {"ratings": [{"movie_id": m, "rating": r} for m, r in pairs], "fallback": not pairs}
        rated = ", ".join(f"{rec.catalogue.movie(m)['title']} = {r:g}" for m, r in pairs)
        title = f"Top {len(items)} for a newcomer who rated {rated} (folded in, rated movies excluded)"
    if args.json:
        return _print_json({**head, "order": order, "items": items})
    if head.get("fallback"):
        floor = max(args.min_ratings, rec.fallback_min_ratings)
        print(f"No ratings given: the average user's top {len(items)} among movies with {floor}+ ratings")
    else:
        print(
            f"{title}; score = raw predicted rating, pred = clipped to {low:g}-{high:g}, ordered by {order}"
        )
    print(_item_table(items, f"movie_id,score,pred,relevance,title,{DETAILS},because", (low, high)))
    return 0


def _newcomer_ratings(
    catalogue, args: argparse.Namespace, scale: tuple[float, float]
) -> list[tuple[int, float]]:
    """The ``--rate`` / ``--ratings`` pairs as ``(movie_id, rating)``; a bad one is a ValueError (or an
    UnknownIdError) naming the flag, or the file, line and title."""
    from embedder.vocab import UnknownIdError

    if args.ratings is not None:
        entries, ask = _rating_file(args.ratings), "put its id in the movie column instead"
    else:
        entries, ask = [], "pass its id with --rate"
        for text in args.rate:
            movie, sep, rating = text.rpartition("=")
            if not sep or not movie.strip():
                raise ValueError(f'--rate {text!r}: expected "MOVIE=RATING", e.g. "Toy Story=5"')
            entries.append((f"--rate {text!r}", movie, rating))
    pairs, where_of = [], {}
    for where, movie, rating in entries:
        try:
            movie_id = catalogue.resolve(movie, ask)
        except (UnknownIdError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from None
        title = f"{catalogue.movie(movie_id)['title']} (movie {movie_id})"
        if movie.strip() != str(movie_id):  # a title: say which movie it was taken as
            print(f"{where}: {movie.strip()} → {title}", file=sys.stderr)
        try:
            value = float(rating)
        except ValueError:
            value = math.nan
        if not scale[0] <= value <= scale[1]:
            allowed = f"a number from {scale[0]:g} to {scale[1]:g}"
            raise ValueError(f"{where}: the rating of {title} must be {allowed}, got {rating.strip()!r}")
        if movie_id in where_of:
            raise ValueError(f"{where}: {title} is rated twice (also at {where_of[movie_id]})")
        where_of[movie_id] = where
        pairs.append((movie_id, value))
    return pairs


def _rating_file(path: Path) -> list[tuple[str, str, str]]:
    """A newcomer's ratings CSV (columns ``movie`` or ``movie_id``, ``rating``): (where, movie, rating)."""
    if not path.is_file():
        raise ValueError(f"--ratings {path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            movie = "movie_id" if "movie_id" in fields else "movie"
            if movie not in fields or "rating" not in fields:
                raise ValueError(f"{path}: expected columns movie (or movie_id) and rating, got {fields}")
            return [(f"{path}, line {n}", r[movie] or "", r["rating"] or "") for n, r in enumerate(reader, 2)]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None


def run_recommend_all(args: argparse.Namespace) -> int:
    """Write every user's (or one shard's) top-k to a parquet file."""
    from threadpoolctl import threadpool_limits

    from search.batch import Shard, write_recommendations

    rec = _load(args)
    shard = args.shard or Shard()
    # This command owns its process: each worker's GEMM gets one BLAS thread, so the workers' GEMMs and
    # selects share the cores instead of competing with BLAS's own threads.
    with threadpool_limits(1, "blas") if args.workers > 1 else contextlib.nullcontext():
        done = write_recommendations(
            rec, args.out, args.k, args.min_ratings, shard, 4096, not args.quiet, args.workers, args.order
        )
    part = f" (shard {shard.index + 1}/{shard.count})" if shard.count > 1 else ""
    print(f"wrote {done.rows:,} rows for {done.users:,} users{part} to {done.path} in {done.seconds:.1f}s")
    return 0


def run_similar(args: argparse.Namespace) -> int:
    """Print the movies most like one movie."""
    from search.similar import EMBEDDING_WEIGHT as W

    rec = _load(args)
    movie_id = rec.catalogue.resolve(args.movie, "pass one id with --movie")
    items = rec.catalogue.items(*rec.similar(movie_id, k=args.k, min_ratings=args.min_ratings))
    title = rec.catalogue.movie(movie_id)["title"]
    if args.json:
        return _print_json({"movie_id": movie_id, "title": title, "items": items})
    if not items:
        print(f"No similar movies for {title} (movie {movie_id}): it has no training ratings (no embedding).")
        return 0
    blend = f"{W:g} x cosine of the embeddings + {1 - W:g} x cosine of who rated them in training"
    print(f"Movies like {title} (movie {movie_id}); score = {blend}")
    print(_item_table(items, f"movie_id,score,title,{DETAILS}"))
    return 0


def run_clusters(args: argparse.Namespace) -> int:
    """Print the cluster table, or one cluster and its members."""
    from search.catalogue import Catalogue

    catalogue = Catalogue.load(args.bundle)  # the catalogue alone: no faiss
    summaries = catalogue.clusters()
    figures = catalogue.bundle.manifest.get("clusters", {})
    quality = {key: figures.get(key) for key in ("k", "seed", "silhouette", "nmi_genres", "nmi_random")}
    if args.cluster is None:
        if args.json:
            return _print_json({"quality": quality, "clusters": summaries})
        silhouette, nmi, random = (_fmt(quality[key]) for key in ("silhouette", "nmi_genres", "nmi_random"))
        print(f"{quality['k']} clusters (seed {quality['seed']}): silhouette {silhouette}, ", end="")
        print(f"NMI with genres {nmi} vs {random} for a random labelling")
        tops = ["; ".join(m["title"] for m in s["top_movies"][:3]) for s in summaries]
        rows = [
            [s["cluster"], s["size"], s["mean_rating"], s["label"], top] for s, top in zip(summaries, tops)
        ]
        print(_table("cluster,size,mean,label,most rated", rows))
        return 0
    members = catalogue.cluster_members(args.cluster)
    summary = summaries[args.cluster]
    if args.json:
        return _print_json({**summary, "members": [catalogue.movie(m) for m in members]})
    mean, label = _fmt(summary["mean_rating"]), summary["label"]
    print(f"Cluster {args.cluster}: {summary['size']} movies, mean rating {mean}, about {label}")
    genres = [[g["genre"], g["share"], g["catalogue_share"], g["lift"]] for g in summary["genres"][:8]]
    print(_table("genre,share,catalogue,lift", genres))
    shown = [catalogue.movie(m) for m in members[: args.limit]]
    print(f"\nMost rated {len(shown)} of {len(members)}:")
    print(_item_table(shown, "movie_id,title,genres,ratings,mean"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print ``error: ...`` to stderr and return 2."""
    from embedder.bundle import BundleError
    from embedder.vocab import UnknownIdError

    args = build_parser().parse_args(argv)
    return run_command(args, (UnknownIdError, BundleError, ValueError, FileNotFoundError))
