"""Command line: ``python -m search build|recommend|recommend-all|similar|clusters`` (docs/design.md, "Command line").

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
from pathlib import Path
from typing import Any

from embedder import DEFAULT_BUNDLE
from embedder.checks import run_command, whole_number_arg

SHARED = {
    "-k": {"type": whole_number_arg(1), "default": 10, "help": "how many movies (default: %(default)s)"},
    "--min-ratings": {
        "type": whole_number_arg(0),
        "default": 0,
        "metavar": "N",
        "help": "only movies with at least N ratings",
    },
    "--json": {"action": "store_true", "help": "print JSON"},
}
"""Flags several commands take, declared once."""


def _fraction(text: str) -> float:
    """An argparse type: a recall target in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
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

    def command(name: str, handler, help: str, *shared: str, **flags: dict) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument(
            "--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle folder (default: %(default)s)"
        )
        for flag in shared:
            sub.add_argument(flag, **SHARED[flag])
        for flag, options in flags.items():
            sub.add_argument("--" + flag.replace("_", "-"), **options)
        sub.set_defaults(handler=handler, parser=sub)
        return sub

    command(
        "build", run_build, "add the movie index, cosine index, K-Means clusters and similar-movie table to a bundle",
        clusters={"type": whole_number_arg(1), "default": 10, "help": "K-Means clusters (default: %(default)s)"},
        index={"choices": ("flat", "hnsw", "ivf"), "default": "flat", "help": "movie index: flat is exact (default: %(default)s)"},
        recall={"type": _fraction, "default": 0.95, "help": "hnsw/ivf: raise the search depth until the measured recall@10 against exact search reaches this (default: %(default)s)"},
        seed={"type": whole_number_arg(0), "default": 0, "help": "random seed (default: %(default)s)"},
    )  # fmt: skip
    recommend = command(
        "recommend", run_recommend, "top-k movies for a user by predicted rating, or for a newcomer from their ratings",
        "-k", "--min-ratings", "--json",
        include_seen={"action": "store_true", "help": "(--user) also return movies the user rated in training"},
    )  # fmt: skip
    # Not a required group: argparse would then name the group rather than a mistyped flag (``--users 1``).
    who = recommend.add_mutually_exclusive_group()
    who.add_argument("--user", type=int, metavar="ID", help="MovieLens user id")
    who.add_argument(
        "--rate",
        action="append",
        metavar='"MOVIE=RATING"',
        help='a newcomer\'s rating of a movie (id or title), e.g. --rate "Toy Story=5"; repeat it',
    )
    who.add_argument(
        "--ratings",
        type=Path,
        metavar="FILE.csv",
        help="a newcomer's ratings: a CSV with columns movie (id or title) or movie_id, and rating",
    )
    command(
        "recommend-all", run_recommend_all, "every user's top-k to a parquet file (user_id, rank, movie_id, score), for batch jobs",
        "-k", "--min-ratings",
        out={"type": Path, "required": True, "metavar": "FILE.parquet", "help": "the parquet file to write (replaced when complete)"},
        shard={"type": _shard, "default": None, "metavar": "I/N", "help": "write only the I-th of N contiguous user shards (1-based), e.g. one per job of an array"},
        workers={"type": whole_number_arg(1), "default": os.cpu_count() or 1, "metavar": "N", "help": "threads searching each block of users, each with one BLAS thread (default: the cores, %(default)s)"},
        quiet={"action": "store_true", "help": "no progress lines"},
    )  # fmt: skip
    command(
        "similar", run_similar, "movies like a movie (embeddings and who rated them, blended)", "-k", "--min-ratings", "--json",
        movie={"required": True, "metavar": 'ID|"title"', "help": "MovieLens movie id, or (part of) a title"},
    )  # fmt: skip
    command(
        "clusters", run_clusters, "the K-Means clusters, or one cluster's members", "--json",
        cluster={"type": whole_number_arg(0), "metavar": "C", "help": "show this cluster and its members"},
        limit={"type": whole_number_arg(1), "default": 20, "help": "members shown with --cluster (default: %(default)s)"},
    )  # fmt: skip
    return parser


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool]) -> str:
    """A plain text table; titles and other long text columns are cut at 48 characters."""
    cells = [[v if len(v) <= 48 else v[:47] + "…" for v in map(_fmt, row)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _item_table(items: list[dict], clip: tuple[float, float] | None = None) -> str:
    """A result's rows as a table; with ``clip`` (the rating scale) a ``pred`` column, the clipped score."""
    pred = ["pred"] if clip else []
    rows = [
        [n, item["movie_id"], item["score"]] + ([min(max(item["score"], clip[0]), clip[1])] if clip else [])
        + [item["title"], "|".join(item["genres"]), item["rating_count"], item["mean_rating"], item["cluster"]]
        for n, item in enumerate(items, 1)
    ]  # fmt: skip
    headers = ["#", "movie_id", "score", *pred, "title", "genres", "ratings", "mean", "cluster"]
    return _table(headers, rows, [True] * (3 + len(pred)) + [False, False, True, True, True])


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


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
    index, clusters = manifest["index"], manifest["clusters"]
    print(
        f"built {args.bundle}: index {index['kind']} (recall@10 {index['recall_at_10']}), {clusters['k']} clusters"
    )
    note = earlier_versions_note(
        args.bundle
    )  # each build keeps the previous version: say how to reclaim the space
    if note:
        print(note, file=sys.stderr)
    return 0


def run_recommend(args: argparse.Namespace) -> int:
    """Print a user's top-k movies (a trained user, or a newcomer folded in)."""
    if args.user is None and args.rate is None and args.ratings is None:
        args.parser.error("one of the arguments --user --rate --ratings is required")
    if args.user is None and args.include_seen:
        args.parser.error(
            "argument --include-seen: applies to --user only (a newcomer's rated movies are always left out)"
        )
    rec = _load(args)
    scale = rec.bundle.rating_scale
    note = f"score = raw predicted rating, pred = clipped to {scale[0]:g}-{scale[1]:g}"
    if args.user is None:
        pairs = _newcomer_ratings(rec.catalogue, args, scale)
        ids, scores = rec.recommend_for_ratings(pairs, k=args.k, min_ratings=args.min_ratings)
        items = rec.catalogue.items(ids, scores)
        if args.json:
            rated = [{"movie_id": movie_id, "rating": rating} for movie_id, rating in pairs]
            _print_json({"ratings": rated, "fallback": not pairs, "items": items})
            return 0
        if pairs:
            shown = ", ".join(f"{rec.catalogue.movie(m)['title']} = {r:g}" for m, r in pairs)
            print(
                f"Top {len(items)} for a newcomer who rated {shown} (folded in, rated movies excluded); {note}"
            )
        else:
            floor = max(args.min_ratings, rec.fallback_min_ratings)
            print(
                f"No ratings given: the average user's top {len(items)} among movies with at least {floor} ratings"
            )
    else:
        ids, scores = rec.recommend(
            args.user, k=args.k, exclude_seen=not args.include_seen, min_ratings=args.min_ratings
        )
        items = rec.catalogue.items(ids, scores)
        if args.json:
            _print_json({"user_id": args.user, "items": items})
            return 0
        seen = "seen movies included" if args.include_seen else "seen movies excluded"
        print(f"Top {len(items)} for user {args.user} ({rec.index_kind} index, {seen}); {note}")
    print(_item_table(items, scale))
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
        entries, ask = (
            [(f"--rate {text!r}", *_rate_flag(text)) for text in args.rate],
            "pass its id with --rate",
        )
    pairs, where_of = [], {}
    for where, movie, rating in entries:
        try:
            movie_id = catalogue.resolve(movie, ask)
        except (UnknownIdError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from None
        title = f"{catalogue.movie(movie_id)['title']} (movie {movie_id})"
        try:
            value = float(rating)
        except ValueError:
            value = math.nan
        if not scale[0] <= value <= scale[1]:
            raise ValueError(
                f"{where}: the rating of {title} must be a number from {scale[0]:g} to {scale[1]:g}, got {rating.strip()!r}"
            )
        if movie_id in where_of:
            raise ValueError(f"{where}: {title} is rated twice (also at {where_of[movie_id]})")
        where_of[movie_id] = where
        pairs.append((movie_id, value))
    return pairs


def _rate_flag(text: str) -> tuple[str, str]:
    """``"MOVIE=RATING"`` split in two."""
    movie, sep, rating = text.rpartition("=")
    if not sep or not movie.strip():
        raise ValueError(f'--rate {text!r}: expected "MOVIE=RATING", e.g. "Toy Story=5"')
    return movie, rating


def _rating_file(path: Path) -> list[tuple[str, str, str]]:
    """A newcomer's ratings CSV (columns ``movie`` or ``movie_id``, and ``rating``) as (where, movie, rating)."""
    if not path.is_file():
        raise ValueError(f"--ratings {path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            column = "movie_id" if "movie_id" in fields else "movie" if "movie" in fields else None
            if column is None or "rating" not in fields:
                raise ValueError(
                    f"{path}: expected a header with columns movie (or movie_id) and rating, got {fields}"
                )
            return [
                (f"{path}, line {n}", row[column] or "", row["rating"] or "")
                for n, row in enumerate(reader, 2)
            ]
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
            rec, args.out, args.k, args.min_ratings, shard, progress=not args.quiet, workers=args.workers
        )
    part = f" (shard {shard.index + 1}/{shard.count})" if shard.count > 1 else ""
    print(f"wrote {done.rows:,} rows for {done.users:,} users{part} to {done.path} in {done.seconds:.1f}s")
    return 0


def run_similar(args: argparse.Namespace) -> int:
    """Print the movies most like one movie."""
    from search.similar import EMBEDDING_WEIGHT

    rec = _load(args)
    movie_id = rec.catalogue.resolve(args.movie, "pass one id with --movie")
    ids, scores = rec.similar(movie_id, k=args.k, min_ratings=args.min_ratings)
    items = rec.catalogue.items(ids, scores)
    title = rec.catalogue.movie(movie_id)["title"]
    if args.json:
        _print_json({"movie_id": movie_id, "title": title, "items": items})
    elif not items:
        print(
            f"No similar movies for {title} (movie {movie_id}): it has no training ratings (and no learnt embedding)."
        )
    else:
        print(
            f"Movies like {title} (movie {movie_id}); score = {EMBEDDING_WEIGHT:g} x cosine of the embeddings"
            f" + {1 - EMBEDDING_WEIGHT:g} x cosine of who rated them in training"
        )
        print(_item_table(items))
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
            _print_json({"quality": quality, "clusters": summaries})
            return 0
        print(
            f"{quality['k']} clusters (seed {quality['seed']}): silhouette {_fmt(quality['silhouette'])}, "
            f"NMI with genres {_fmt(quality['nmi_genres'])} vs {_fmt(quality['nmi_random'])} for a random labelling"
        )
        rows = [
            [
                s["cluster"],
                s["size"],
                s["mean_rating"],
                s["label"],
                "; ".join(m["title"] for m in s["top_movies"][:3]),
            ]
            for s in summaries
        ]
        print(
            _table(["cluster", "size", "mean", "label", "most rated"], rows, [True, True, True, False, False])
        )
        return 0
    members = catalogue.cluster_members(args.cluster)
    summary = summaries[args.cluster]
    if args.json:
        _print_json({**summary, "members": [catalogue.movie(m) for m in members]})
        return 0
    shown = [catalogue.movie(m) for m in members[: args.limit]]
    print(
        f"Cluster {args.cluster}: {summary['size']} movies, mean rating {_fmt(summary['mean_rating'])}, about {summary['label']}"
    )
    genres = [[g["genre"], g["share"], g["catalogue_share"], g["lift"]] for g in summary["genres"][:8]]
    print(_table(["genre", "share", "catalogue", "lift"], genres, [False, True, True, True]))
    print(f"\nMost rated {len(shown)} of {len(members)}:")
    rows = [
        [n, m["movie_id"], m["title"], "|".join(m["genres"]), m["rating_count"], m["mean_rating"]]
        for n, m in enumerate(shown, 1)
    ]
    print(
        _table(
            ["#", "movie_id", "title", "genres", "ratings", "mean"],
            rows,
            [True, True, False, False, True, True],
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print ``error: ...`` to stderr and return 2."""
    from embedder.bundle import BundleError
    from embedder.vocab import UnknownIdError

    args = build_parser().parse_args(argv)
    return run_command(args, (UnknownIdError, BundleError, ValueError, FileNotFoundError))
