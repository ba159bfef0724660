"""Command line: ``python -m embedder train|evaluate`` (DESIGN.md, "Command-line contract")."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

DEFAULT_ARTIFACTS = Path("artifacts")
DEFAULT_BUNDLE = DEFAULT_ARTIFACTS / "current"


def _bounded(convert: type, low: float, inclusive: bool):
    """An argparse type: ``convert`` the text and check it against ``low``."""
    noun = "a whole number" if convert is int else "a number"
    bound = f"at least {low}" if inclusive else f"greater than {low}"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not math.isfinite(value) or not (value >= low if inclusive else value > low):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


_positive_int = _bounded(int, 1, inclusive=True)
_non_negative_int = _bounded(int, 0, inclusive=True)
_positive_float = _bounded(float, 0, inclusive=False)
_non_negative_float = _bounded(float, 0, inclusive=True)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m embedder``."""
    from embedder.config import TrainConfig

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m embedder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train on MovieLens and export a bundle")
    train.add_argument("--data", default="ml-100k", help="'ml-100k' (default, fetched and cached) or a path to a MovieLens release / CSV")
    train.add_argument("--out", type=Path, help="write the bundle at this folder (leaves artifacts/current alone)")
    train.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS, help="artifacts folder for versioned bundles and the 'current' link (default: %(default)s)")
    train.add_argument("--dim", type=_positive_int, default=defaults.dim, help="embedding size (default: %(default)s)")
    train.add_argument("--epochs", type=_positive_int, default=defaults.epochs, help="maximum epochs (default: %(default)s)")
    train.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size, help="ratings per step (default: %(default)s)")
    train.add_argument("--lr", type=_positive_float, default=defaults.lr, help="Adam learning rate (default: %(default)s)")
    train.add_argument("--reg", type=_non_negative_float, default=defaults.reg, help="L2 on embeddings (default: %(default)s)")
    train.add_argument("--bias-reg", type=_non_negative_float, default=defaults.bias_reg, help="L2 on biases (default: %(default)s)")
    train.add_argument("--patience", type=_positive_int, default=defaults.patience, help="early-stopping patience in epochs (default: %(default)s)")
    train.add_argument("--seed", type=_non_negative_int, default=defaults.seed, help="random seed (default: %(default)s)")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default=defaults.device, help="(default: %(default)s)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("evaluate", help="recompute a bundle's figures on the canonical test split")
    evaluate.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle folder (default: %(default)s)")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=run_evaluate)
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Load data, split, train, export; print the test RMSE and wall time."""
    from embedder.bundle import point_current
    from embedder.config import TrainConfig
    from embedder.data import load_ratings
    from embedder.export import export_bundle
    from embedder.split import canonical_split
    from embedder.train import train
    from embedder.vocab import Vocabulary

    started = time.perf_counter()
    config = TrainConfig(
        dim=args.dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        reg=args.reg,
        bias_reg=args.bias_reg,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
    )
    data = load_ratings(args.data, progress=not args.quiet)
    print(f"data: {data.name} from {data.source}: {len(data.ratings):,} ratings", file=sys.stderr)
    if data.duplicates_dropped:
        print(f"data: {data.duplicates_dropped} duplicate (user, movie) rows dropped, the last kept", file=sys.stderr)
    train_part, test_part = canonical_split(data.ratings)
    users = Vocabulary.from_values(data.ratings["user_id"], "user")
    movies = Vocabulary.from_values(
        list(set(data.ratings["movie_id"].tolist()) | set(data.movies["movie_id"].tolist())), "movie"
    )
    result = train(train_part, config, users, movies, data.rating_scale, progress=not args.quiet)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    dest = args.out if args.out is not None else args.artifacts / "bundles" / f"{data.name}-{stamp}"
    dataset = {
        "name": data.name,
        "data_arg": str(Path(args.data).resolve()) if Path(args.data).exists() else args.data,
        "source": data.source,
        "checksum": data.checksum,
        "n_ratings": int(len(data.ratings)),
        "duplicates_dropped": int(data.duplicates_dropped),
    }
    path, manifest = export_bundle(dest, result, config, dataset, data.movies, train_part, test_part)
    if args.out is None:
        point_current(args.artifacts / "current", path)
    test = manifest["metrics"]["test"]
    wall = time.perf_counter() - started
    print(f"bundle: {path}" + ("" if args.out else f" (now {args.artifacts / 'current'})"))
    print(
        f"test RMSE {test['rmse']:.4f}  MAE {test['mae']:.4f}  "
        f"(best epoch {result.best_epoch}, training {result.seconds:.1f}s, wall time {wall:.1f}s)"
    )
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Recompute the bundle's figures from its .npy files and the canonical split."""
    from embedder.evaluate import evaluate_bundle

    report = evaluate_bundle(args.bundle)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, value in report["flat"].items():
            print(f"{name:<32} {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line and exit 2."""
    from embedder.bundle import BundleError
    from embedder.data import DataError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (DataError, BundleError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
