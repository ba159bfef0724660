"""Training configuration: one frozen pydantic model, dumped into the manifest.

Each field's description is the command line's help for its flag; a description that starts with (gibbs)
or (adam) marks a setting only that method reads. The defaults were chosen on a validation part of
MovieLens 100K's training rows (``benchmarks/README.md``).
"""

from __future__ import annotations

from functools import partial
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

IMPLICIT_AUTO_LIMIT = 1_000_000
"""``implicit='auto'`` means ``'both'`` up to this many training ratings, ``'none'`` above."""
METHODS = ("gibbs", "adam")


def _setting(default, description: str, method: str = "", **limits):
    return Field(default, description=f"({method}) {description}" if method else description, **limits)


_gibbs, _adam = partial(_setting, method="gibbs"), partial(_setting, method="adam")


class TrainConfig(BaseModel):
    """Hyper-parameters of :func:`embedder.train.train`, checked on construction."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", allow_inf_nan=False)

    method: Literal["gibbs", "adam"] = _setting(
        "gibbs",
        "How to fit the model. 'gibbs': Bayesian MF by Gibbs sampling, exporting the posterior mean; 'adam': "
        "one point estimate, Adam on MSE + L2 with early stopping. Both export a bundle.",
    )
    dim: int = _setting(
        64, "Embedding size d of the exported p_u and q_i (gibbs: the posterior mean's best rank-d).", ge=1
    )
    sample_dim: int = _gibbs(10, "Factor size of each posterior sample.", ge=1)
    implicit: Literal["auto", "none", "users", "both"] = _gibbs(
        "auto",
        "Which rows also learn from who rated what (SVD++'s implicit part): 'users', 'both' (movies from who "
        "rated them too), 'none' (plain biased MF), or 'auto': 'both' up to 1M training ratings, 'none' "
        "above, where it would cost several times the rest of a sweep.",
    )
    sweeps: int = _gibbs(
        300, "Upper bound on sampling sweeps; the chain usually stops sooner (tolerance).", ge=1
    )
    warm_up: int = _gibbs(
        3,
        "Upper bound on the alternating-least-squares passes that start the chain near the posterior's mode; "
        "they stop once the training RMSE improves by less than 0.001.",
        ge=1,
    )
    warm_ridge: float = _gibbs(25.0, "Ridge weight λ of the warm-up passes.", gt=0)
    tolerance: float = _gibbs(
        0.0003,
        "Stop sampling once doubling the samples would improve the RMSE of the running mean by less than "
        "this (estimated from the samples' spread).",
        gt=0,
    )
    min_sweeps: int = _gibbs(10, "Sampling sweeps averaged before the chain may stop.", ge=1)
    sample_init_std: float = _gibbs(
        0.1, "Standard deviation of the chain's initial factors (before the warm-up).", gt=0
    )
    burn_in: int = _gibbs(0, "Sampling sweeps discarded before averaging (below sweeps).", ge=0)
    epochs: int = _adam(60, "Upper bound on training epochs; early stopping usually ends sooner.", ge=1)
    batch_size: int = _adam(1024, "Ratings per optimisation step.", ge=1)
    lr: float = _adam(0.005, "Learning rate.", gt=0)
    reg: float = _adam(0.12, "L2 weight on the embeddings a batch touches (per rating).", ge=0)
    bias_reg: float = _adam(0.005, "L2 weight on the biases a batch touches (per rating).", ge=0)
    init_std: float = _adam(0.05, "Standard deviation of the embeddings' initialisation.", gt=0)
    val_fraction: float = _setting(
        0.1, "Fraction of the training rows held out to choose the epoch (sweep) count.", gt=0, lt=0.5
    )
    patience: int = _adam(3, "Epochs without a validation improvement before stopping.", ge=1)
    refit: bool = _setting(
        True,
        "Fit the exported model on all training rows. (gibbs) one chain on all of them; without, the chain "
        "runs on the rows less a validation part and records its RMSE per sweep. (adam) after the validation "
        "run that picks the epoch count, fit again on all training rows for that count.",
    )
    relevance_rank: int = _setting(
        64,
        "Rank of the relevance model of who watches what, which orders the top-K by default "
        "(embedder/relevance.py); 0: none, recommend by predicted rating.",
        ge=0,
    )
    relevance_weight: float = _setting(
        0.01, "β: how much the predicted rating adds to a movie's relevance.", ge=0
    )
    seed: int = _setting(
        42, "Seed of the validation carve-out, the initialisation and the sampling/batch order."
    )
    device: Literal["auto", "cpu", "cuda"] = _setting(
        "auto", "'cpu', 'cuda' or 'auto' (CUDA when available)."
    )
    threads: int = _setting(
        0, "CPU threads for torch, set by the command line; 0 keeps torch's default (all cores).", ge=0
    )

    @field_validator("burn_in")
    @classmethod
    def _burn_in_below_sweeps(cls, value: int, info: ValidationInfo) -> int:
        sweeps = info.data.get("sweeps", 300)
        if value >= sweeps:
            raise ValueError(f"burn_in must be below sweeps ({sweeps})")
        return value

    def implicit_sides(self, n_ratings: int) -> str:
        """What ``implicit`` means for ``n_ratings`` training ratings ('auto' resolved)."""
        auto = "both" if n_ratings <= IMPLICIT_AUTO_LIMIT else "none"
        return auto if self.implicit == "auto" else self.implicit


def one_method_settings() -> dict[str, str]:
    """The settings that one method alone reads (their description starts with ``(gibbs)`` or ``(adam)``),
    each with that method; the other method ignores them."""
    marks = {name: f.description.split()[0].strip("()") for name, f in TrainConfig.model_fields.items()}
    return {name: method for name, method in marks.items() if method in METHODS}
