"""Recompute a bundle's figures from its ``.npy`` files and the canonical split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedder.bundle import Bundle, BundleError
from embedder.data import load_ratings
from embedder.split import canonical_split, rmse_mae


def evaluate_bundle(path: str | Path) -> dict[str, Any]:
    """Reload the bundle's dataset, re-split it canonically, and score the bundle.

    Predictions come from the stored arrays alone (``μ + b_u + b_i + p_u·q_i``,
    clipped), so the figures match the manifest's only if the files do.
    """
    bundle = Bundle.load(path)
    dataset = bundle.manifest["dataset"]
    data = load_ratings(dataset["data_arg"], progress=False)
    if data.checksum != dataset["checksum"]:
        raise BundleError(
            f"manifest.json: dataset checksum {dataset['checksum'][:12]}… does not match "
            f"the data at {dataset['data_arg']} ({data.checksum[:12]}…)"
        )
    train, test = canonical_split(data.ratings)
    metrics = {
        name: rmse_mae(bundle.predict(part["user_id"].to_numpy(), part["movie_id"].to_numpy()), part["rating"].to_numpy())
        for name, part in (("train", train), ("test", test))
    }
    flat = {f"{part}_{key}": round(value, 4) for part, values in metrics.items() for key, value in values.items()}
    flat["manifest_test_rmse"] = round(bundle.manifest["metrics"]["test"]["rmse"], 4)
    return {"bundle": str(bundle.path), "dataset": dataset["name"], "metrics": metrics, "flat": flat}
