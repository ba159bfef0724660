"""Training configuration: one frozen pydantic model, dumped into the manifest.

Each field's description is the command line's help for its flag; a description that
starts with (gibbs) or (adam) marks a setting only that method reads. The defaults were
chosen on a validation part of MovieLens 100K's training rows (``benchmarks/README.md``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

IMPLICIT_AUTO_LIMIT = 1_000_000
"""``implicit='auto'`` means ``'both'`` up to this many training ratings, ``'none'`` above."""


class TrainConfig(BaseModel):
    """Hyper-parameters of :func:`embedder.train.train`, checked on construction."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", allow_inf_nan=False)

    method: Literal["gibbs", "adam"] = Field(
        "gibbs",
        description="How to fit the model. 'gibbs': Bayesian MF by Gibbs sampling, exporting the posterior "
        "mean; 'adam': one point estimate, Adam on MSE + L2 with early stopping. Both export a bundle.",
    )
    dim: int = Field(
        64,
        ge=1,
        description="Embedding size d of the exported p_u and q_i (gibbs: the posterior mean's best rank-d).",
    )
    sample_dim: int = Field(10, ge=1, description="(gibbs) Factor size of each posterior sample.")
    implicit: Literal["auto", "none", "users", "both"] = Field(
        "auto",
        description="(gibbs) Which rows also learn from who rated what (SVD++'s implicit part): 'users', "
        "'both' (movies from who rated them too), 'none' (plain biased MF), or 'auto': 'both' up to 1M "
        "training ratings, 'none' above, where it would cost several times the rest of a sweep.",
    )
    sweeps: int = Field(
        300,
        ge=1,
        description="(gibbs) Upper bound on sampling sweeps; the chain usually stops sooner (tolerance).",
    )
    warm_up: int = Field(
        3,
        ge=1,
        description="(gibbs) Upper bound on the alternating-least-squares passes that start the chain near "
        "the posterior's mode; they stop once the training RMSE improves by less than 0.001.",
    )
    warm_ridge: float = Field(25.0, gt=0, description="(gibbs) Ridge weight λ of the warm-up passes.")
    tolerance: float = Field(
        0.0003,
        gt=0,
        description="(gibbs) Stop sampling once doubling the samples would improve the RMSE of the running "
        "mean by less than this (estimated from the samples' spread).",
    )
    min_sweeps: int = Field(
        10, ge=1, description="(gibbs) Sampling sweeps averaged before the chain may stop."
    )
    sample_init_std: float = Field(
        0.1,
        gt=0,
        description="(gibbs) Standard deviation of the chain's initial factors (before the warm-up).",
    )
    burn_in: int = Field(
        0, ge=0, description="(gibbs) Sampling sweeps discarded before averaging (below sweeps)."
    )
    epochs: int = Field(
        60, ge=1, description="(adam) Upper bound on training epochs; early stopping usually ends sooner."
    )
    batch_size: int = Field(1024, ge=1, description="(adam) Ratings per optimisation step.")
    lr: float = Field(0.005, gt=0, description="(adam) Learning rate.")
    reg: float = Field(
        0.12, ge=0, description="(adam) L2 weight on the embeddings a batch touches (per rating)."
    )
    bias_reg: float = Field(
        0.005, ge=0, description="(adam) L2 weight on the biases a batch touches (per rating)."
    )
    init_std: float = Field(
        0.05, gt=0, description="(adam) Standard deviation of the embeddings' initialisation."
    )
    val_fraction: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="Fraction of the training rows held out to choose the epoch (sweep) count.",
    )
    patience: int = Field(
        3, ge=1, description="(adam) Epochs without a validation improvement before stopping."
    )
    refit: bool = Field(
        True,
        description="Fit the exported model on all training rows. (gibbs) one chain on all of them; without, "
        "the chain runs on the rows less a validation part and records its RMSE per sweep. (adam) after the "
        "validation run that picks the epoch count, fit again on all training rows for that count.",
    )
    relevance_rank: int = Field(
        256,
        ge=0,
        description="Rank of the relevance model of who watches what, which orders the top-K by default "
        "(embedder/relevance.py); 0: none, recommend by predicted rating.",
    )
    relevance_weight: float = Field(
        0.01, ge=0, description="β: how much the predicted rating adds to a movie's relevance."
    )
    seed: int = Field(
        42, description="Seed of the validation carve-out, the initialisation and the sampling/batch order."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'cpu', 'cuda' or 'auto' (CUDA when available)."
    )
    threads: int = Field(
        0,
        ge=0,
        description="CPU threads for torch, set by the command line; 0 keeps torch's default (all cores).",
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
        if self.implicit != "auto":
            return self.implicit
        return "both" if n_ratings <= IMPLICIT_AUTO_LIMIT else "none"


def one_method_settings() -> dict[str, str]:
    """The settings that one method alone reads, each with that method (their description
    starts with ``(gibbs)`` or ``(adam)``); the other method ignores them."""
    marks = {"(gibbs)": "gibbs", "(adam)": "adam"}
    fields = TrainConfig.model_fields.items()
    return {name: marks[f.description.split()[0]] for name, f in fields if f.description.split()[0] in marks}
