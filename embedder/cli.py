"""Command line: ``python -m embedder train|evaluate|bundles`` (docs/design.md, "Command line")."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import typing
from collections.abc import Sequence
from datetime import timezone
from pathlib import Path

from embedder import DEFAULT_ARTIFACTS, DEFAULT_BUNDLE
from embedder.checks import run_command, whole_number_arg

log = logging.getLogger("embedder")
DEFAULT_MIN_RATINGS = 20
"""search.evaluate.DEFAULT_MIN_RATINGS, repeated so that --help need not import pandas (a test checks)."""
AGE_UNITS = (("d", 86400), ("h", 3600), ("min", 60))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m embedder``."""
    from embedder.config import TrainConfig

    parser = argparse.ArgumentParser(prog="python -m embedder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train on MovieLens and export a bundle")
    train.add_argument("--data", default="ml-100k", help="'ml-100k' (fetched) or a MovieLens release / CSV")
    train.add_argument("--out", type=Path, help="write the bundle here (artifacts/current left alone)")
    artifacts_help = "folder of the bundles and the 'current' link (default: %(default)s)"
    train.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS, help=artifacts_help)
    # One flag per setting; a flag not given stays out of the namespace, so TrainConfig's default applies.
    for name, field in TrainConfig.model_fields.items():
        help_text = f"{field.description} (default: {field.default})"
        options: dict = {"default": argparse.SUPPRESS, "help": help_text}
        if field.annotation is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(field.annotation) is typing.Literal:
            options["choices"] = typing.get_args(field.annotation)
        else:
            options["type"] = field.annotation
        train.add_argument("--" + name.replace("_", "-"), **options)
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=run_train, parser=train)

    evaluate = commands.add_parser("evaluate", help="recompute a bundle's figures on the test split")
    evaluate.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="default: %(default)s")
    floor_help = "also rank only movies with this many training ratings (default: %(default)s)"
    evaluate.add_argument(
        "--min-ratings", type=whole_number_arg(0), default=DEFAULT_MIN_RATINGS, help=floor_help
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=run_evaluate)

    bundles = commands.add_parser("bundles", help="list the published bundles; --keep N deletes older ones")
    where = bundles.add_mutually_exclusive_group()
    where.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS, help=artifacts_help)
    where.add_argument("--bundle", type=Path, help="instead, this bundle's versions (<name>+<UTC stamp>)")
    keep_help = "delete all but the N newest (never the current) and leftovers over an hour old"
    bundles.add_argument("--keep", type=whole_number_arg(1), help=keep_help)
    bundles.add_argument("--json", action="store_true", help="print JSON")
    bundles.set_defaults(handler=run_bundles)
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Load data, split, train, evaluate, export; print the test RMSE and wall time. Under torchrun every
    process trains its share of the chain; rank 0 alone evaluates, exports and prints."""
    from pydantic import ValidationError

    from embedder import distributed
    from embedder.config import TrainConfig, one_method_settings

    started = time.perf_counter()
    try:
        given = {name: getattr(args, name) for name in TrainConfig.model_fields if hasattr(args, name)}
        config = TrainConfig(**given)
    except ValidationError as err:
        first = err.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        args.parser.error(f"argument {flag}: {first['msg']}, got {first['input']!r}")
    for name, owner in sorted(one_method_settings().items()):
        if owner != config.method and hasattr(args, name):
            flag = "--" + name.replace("_", "-")
            log.warning("%s is read by --method %s only; %s ignores it", flag, owner, config.method)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)  # the application's choice, made once here
    if not distributed.launched_by_torchrun():
        return _train_and_export(args, config, distributed.Group(), started)
    from embedder.train import resolve_device

    if config.method != "gibbs":
        args.parser.error(
            f"argument --method: {config.method!r} runs in one process; only 'gibbs' trains under torchrun"
        )
    group = distributed.join(resolve_device(config.device))
    try:
        return _train_and_export(args, config, group, started)
    finally:
        distributed.leave()


def _train_and_export(args: argparse.Namespace, config, group, started: float) -> int:
    """Load the data, train, fit the relevance model, evaluate and export; the first process publishes."""
    from embedder import export
    from embedder.artifacts import earlier_versions_note
    from embedder.bundle import Bundle, BundleError, check_replaceable
    from embedder.data import canonical_split, load_ratings
    from embedder.publish import point_current, utc_stamp
    from embedder.train import train
    from embedder.vocab import Vocabulary
    from search.evaluate import held_out_rows, quality_report

    first = group.rank == 0
    if args.out is not None:
        check_replaceable(Path(args.out))  # now, not after the training
    if not first:
        group.barrier()  # the first process fetches and caches the data; the others then read the cache
    data = load_ratings(args.data, progress=not args.quiet and first)
    if first:
        group.barrier()
        print(f"data: {data.name} from {data.source}: {len(data.ratings):,} ratings", file=sys.stderr)
    train_part, test_part = canonical_split(data.ratings, source=data.source)
    users = Vocabulary.from_values(data.ratings["user_id"], "user")
    movies = Vocabulary.from_values([*data.ratings["movie_id"].unique(), *data.movies["movie_id"]], "movie")
    progress = not args.quiet and first
    result = train(train_part, config, users, movies, data.rating_scale, progress=progress, group=group)
    if not first:
        return 0
    seen = export.seen_matrix(result.model, train_part)
    relevance, relevance_info = _fit_relevance(config, result.model, seen, train_part)
    table = export.movie_table(data.movies, movies.ids, train_part)
    held_out = held_out_rows(test_part, users, movies)
    report = quality_report(result.model, seen, table, held_out, seed=config.seed, relevance=relevance)
    dest = args.out if args.out is not None else args.artifacts / "bundles" / f"{data.name}-{utc_stamp()}"
    dataset = {
        "name": data.name,
        "data_arg": str(Path(args.data).resolve()) if Path(args.data).exists() else args.data,
        "source": data.source,
        "checksum": data.checksum,
        "n_ratings": int(len(data.ratings)),
        "duplicates_dropped": int(data.duplicates_dropped),
    }
    path, manifest = export.export_bundle(
        dest, result, config, dataset, table, train_part, test_part, seen, report, relevance, relevance_info
    )
    try:
        Bundle.load(path)  # as every reader will: a bundle that does not load is never made current
    except BundleError as err:
        kept = "" if args.out else f"; {args.artifacts / 'current'} was left as it was"
        raise BundleError(f"{path}: the bundle just written does not load ({err}){kept}") from err
    if args.out is None:
        point_current(args.artifacts / "current", path)
    print(f"bundle: {path}" + ("" if args.out else f" (now {args.artifacts / 'current'})"))
    if args.out and (note := earlier_versions_note(path)):  # train's own versions: `bundles --keep`
        print(note, file=sys.stderr)
    _print_figures(config, result, manifest, relevance_info, time.perf_counter() - started)
    return 0


def _fit_relevance(config, model, seen, train_part) -> tuple:
    """The relevance model and its manifest entry (λ chosen on the validation part), or (None, None)."""
    from embedder.data import validation_split
    from embedder.export import seen_matrix
    from embedder.relevance import REGULARIZATIONS, fit_relevance

    if not config.relevance_rank:
        return None, None
    started = time.perf_counter()
    validation = seen_matrix(model, validation_split(train_part, config.val_fraction, config.seed)[1])
    rank, weight = config.relevance_rank, config.relevance_weight
    relevance, figures = fit_relevance(seen, validation, rank, REGULARIZATIONS, weight, seed=config.seed)
    return relevance, {
        "rank": int(relevance.shrinkage.shape[0]),
        "regularization": relevance.regularization,
        "rating_weight": relevance.rating_weight,
        "validation_ndcg": {f"{lam:g}": round(value, 6) for lam, value in figures.items()},
        "seconds": round(time.perf_counter() - started, 3),
    }


def _print_figures(config, result, manifest: dict, relevance_info: dict | None, seconds: float) -> None:
    """One line: the test figures and how the run went."""
    test, unit, ranking = manifest["metrics"]["test"], manifest["training"]["unit"], manifest["evaluation"]
    warm = f"{result.warm_up_passes} warm-up passes + {result.best_epoch} {unit}s"
    run = [warm if result.warm_up_passes else f"best {unit} {result.best_epoch}"]
    if math.isfinite(result.validation_rmse):
        run.append(f"validation RMSE {result.validation_rmse:.4f}")
    if result.implicit_sides != "none":
        run.append(f"who rated what: {result.implicit_sides}")
    ndcg = f"NDCG@10 {ranking['ranking']['0']['model']['ndcg']:.4f} by rating"
    if relevance_info is not None:
        run.append(f"relevance λ {relevance_info['regularization']:g} in {relevance_info['seconds']:.1f}s")
        ndcg = f"NDCG@10 {ranking['ranking']['0']['relevance']['ndcg']:.4f} by relevance, " + ndcg[8:]
    processes = f" on {result.world_size} processes" if result.world_size > 1 else ""
    run += [f"training {result.seconds:.1f}s{processes}", f"wall time {seconds:.1f}s"]
    print(f"test RMSE {test['rmse']:.4f}  MAE {test['mae']:.4f}  {ndcg}  ({config.method}, {', '.join(run)})")


def run_evaluate(args: argparse.Namespace) -> int:
    """Recompute the bundle's figures from its .npy files and the canonical split."""
    from search.evaluate import evaluate_bundle, format_report

    report = evaluate_bundle(args.bundle, min_ratings=args.min_ratings)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        flat = "\n".join(f"{name:<32} {value}" for name, value in report["flat"].items())
        print(flat, format_report(report["quality"]), sep="\n\n")
    return 0


def run_bundles(args: argparse.Namespace) -> int:
    """List the bundles of ``--artifacts`` (or the versions of ``--bundle``); ``--keep N`` prunes them."""
    from embedder import artifacts
    from embedder.artifacts import BUNDLE

    versions = args.bundle is not None
    where = args.bundle if versions else args.artifacts
    root = artifacts.versions_folder(where)[0] if versions else where
    if args.keep is None:
        rows = (artifacts.list_versions if versions else artifacts.list_bundles)(where)
        print(json.dumps([row.to_json() for row in rows], indent=2) if args.json else _listing(rows, root))
        return 0
    result = (artifacts.prune_versions if versions else artifacts.prune_bundles)(where, args.keep)
    if args.json:
        report = {key: [row.to_json() for row in rows] for key, rows in result._asdict().items()}
        print(json.dumps(report, indent=2))
        return 0
    removed = [f"removed {row.path.relative_to(root)} ({_what(row)})" for row in result.removed]
    left = [f"kept {row.path.relative_to(root)} ({_what(row)})" for row in result.kept if row.kind != BUNDLE]
    kept = [row.name + (" (current)" if row.current else "") for row in result.kept if row.kind == BUNDLE]
    kept_line = f"kept {len(kept)} bundle(s): {', '.join(kept) or 'none'}"
    print("\n".join([*(removed or ["nothing removed"]), *left, kept_line]))
    return 0


def _listing(rows, root: Path) -> str:
    """One line per entry (``<- current`` marks the one served), then the leftovers (relative to ``root``)."""
    from embedder.artifacts import BUNDLE, LEFTOVER, LINK

    entries = [row for row in rows if row.kind != LEFTOVER]
    width = max((len(row.name) for row in entries), default=0)
    lines = [] if entries else [f"no bundles in {root}"]
    for row in entries:
        if row.kind == BUNDLE:
            detail = "no test RMSE" if row.test_rmse is None else f"test RMSE {row.test_rmse:.4f}"
        else:
            detail = f"link to {os.readlink(row.path)} (not followed)" if row.kind == LINK else "not a bundle"
        marker = "  <- current" if row.current else ""
        lines.append(f"{row.name:<{width}}  {_when(row)}  {_size(row):>20}  {detail}{marker}")
    leftovers = [f"{row.path.relative_to(root)} ({_age(row)} old)" for row in rows if row.kind == LEFTOVER]
    return "\n".join(lines + ([f"staging leftovers: {', '.join(leftovers)}"] if leftovers else []))


def _what(row) -> str:
    """A row's kind and, for what prune leaves alone, why."""
    from embedder.artifacts import BUNDLE, LEFTOVER, LINK
    from embedder.publish import LEFTOVER_MIN_AGE_S

    if row.kind == BUNDLE:
        return f"bundle created {_when(row)}, {_size(row)}"
    if row.kind == LEFTOVER:
        busy = time.time() - row.created.timestamp() < LEFTOVER_MIN_AGE_S
        return f"staging leftover, {_age(row)} old" + (": a writer may still be using it" if busy else "")
    return "a link: never followed" if row.kind == LINK else "not a bundle: never deleted"


def _when(row) -> str:
    return row.created.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(row) -> str:
    seconds = max(0.0, time.time() - row.created.timestamp())
    unit, size = next(((unit, size) for unit, size in AGE_UNITS if seconds >= size), ("s", 1))
    return f"{seconds // size:.0f} {unit}"


def _size(row) -> str:
    """A row's size, and how much of it no other version shares (what removing it frees)."""
    return "-" if row.bytes is None else f"{_bytes(row.bytes)}, {_bytes(row.own_bytes)} own"


def _bytes(count: int) -> str:
    power = min((len(str(count)) - 1) // 3, 3)
    return f"{count / 1000**power:.1f} {' kMG'[power]}B" if power else f"{count} B"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line and exit 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    # Imported after parsing, so that --help and a bad flag answer without loading numpy and pandas.
    from embedder.bundle import BundleError
    from embedder.data import DataError

    return run_command(args, (DataError, BundleError, ValueError, FileNotFoundError))
