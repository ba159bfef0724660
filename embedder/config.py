"""Training configuration: one frozen dataclass, written into the manifest."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from embedder.checks import finite_number

METHODS = ("gibbs", "adam")
DEVICES = ("auto", "cpu", "cuda")
IMPLICIT = ("auto", "none", "users", "both")
IMPLICIT_AUTO_LIMIT = 1_000_000
"""``implicit='auto'`` means ``'both'`` up to this many training ratings, ``'none'`` above."""
CHOICES = {"method": METHODS, "device": DEVICES, "implicit": IMPLICIT}
"""The fields that take one of a few words (the command line offers them as choices)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`embedder.train.train`.

    The defaults were chosen on a validation part of MovieLens 100K's training rows
    (``benchmarks/README.md`` lists what was tried and the figures reached). Fields
    whose docstring starts with (gibbs) or (adam) are read by that method only
    (:func:`one_method_settings`; the command line warns when one is given for the
    other method). Every field is validated on construction, so a bad value from
    the command line fails before any data is read.
    """

    method: str = "gibbs"
    """How to fit the model. ``'gibbs'``: Bayesian MF by Gibbs sampling, exporting the
    posterior mean (see :mod:`embedder.gibbs`); ``'adam'``: one point estimate, Adam on
    MSE + L2 with early stopping. Both export the same kind of bundle."""
    dim: int = 64
    """Embedding size d of the exported p_u and q_i. For ``'gibbs'`` the posterior mean
    is truncated to this rank (its best rank-d approximation)."""
    sample_dim: int = 10
    """(gibbs) Factor size of each posterior sample."""
    implicit: str = "auto"
    """(gibbs) Which rows also learn from who rated what (SVD++'s implicit part, see
    :mod:`embedder.implicit`): ``'users'``: a user's vector adds the normalised sum
    of one learned vector per movie they rated; ``'both'``: a movie's likewise
    adds one per user who rated it; ``'none'``: plain biased MF; ``'auto'``:
    ``'both'`` up to 1M training ratings (MovieLens 1M), ``'none'`` above, where
    it would cost several times the rest of a sweep. The bundle holds the
    composite vectors either way."""
    sweeps: int = 300
    """(gibbs) Upper bound on sampling sweeps; the chain normally stops sooner, once
    its running mean has converged (see ``tolerance``)."""
    warm_up: int = 3
    """(gibbs) Upper bound on the alternating-least-squares passes that start the
    chain near the posterior's mode; they stop once the training RMSE improves by
    less than 0.001."""
    warm_ridge: float = 25.0
    """(gibbs) Ridge weight λ of the warm-up passes (``Σ (r - r̂)² + λ ‖row‖²``)."""
    tolerance: float = 0.0003
    """(gibbs) Stop sampling once doubling the samples would improve the RMSE of the
    running mean by less than this (estimated from the samples' spread)."""
    min_sweeps: int = 10
    """(gibbs) Sampling sweeps averaged before the stopping rule may end the chain."""
    sample_init_std: float = 0.1
    """(gibbs) Standard deviation of the normal initialisation of the chain's factors
    (before the warm-up passes)."""
    burn_in: int = 0
    """(gibbs) Sampling sweeps discarded before averaging."""
    epochs: int = 60
    """(adam) Upper bound on training epochs; early stopping usually ends sooner."""
    batch_size: int = 1024
    """(adam) Ratings per optimisation step."""
    lr: float = 0.005
    """(adam) Learning rate."""
    reg: float = 0.12
    """(adam) L2 weight on the embeddings a batch touches (per rating)."""
    bias_reg: float = 0.005
    """(adam) L2 weight on the biases a batch touches (per rating)."""
    init_std: float = 0.05
    """(adam) Standard deviation of the normal initialisation of the embeddings."""
    val_fraction: float = 0.1
    """Fraction of the TRAINING rows held out to choose the epoch (or sweep) count."""
    patience: int = 3
    """(adam) Epochs without a validation improvement before stopping."""
    refit: bool = True
    """Fit the exported model on all training rows. (gibbs) one chain on all of them;
    ``False`` runs the chain on the rows less a validation part and records the
    validation RMSE per sweep. (adam) after the validation run that picks the epoch
    count, fit again on all training rows for that count."""
    seed: int = 42
    """Seed of the validation carve-out, the initialisation and the sampling/batch order."""
    device: str = "auto"
    """'cpu', 'cuda' or 'auto' (CUDA when available)."""
    threads: int = 0
    """CPU threads for torch's operations, set by the command line before training
    (library code leaves torch's setting alone); 0 keeps torch's default (all cores)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Free-form notes recorded with the config (not used by training)."""

    def __post_init__(self) -> None:
        for name in ("dim", "sample_dim", "sweeps", "warm_up", "min_sweeps", "epochs", "batch_size", "patience"):
            if not self._whole(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in CHOICES:
            if getattr(self, name) not in CHOICES[name]:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, CHOICES[name]))}, got {getattr(self, name)!r}")
        if not self._whole(self.burn_in) or not 0 <= self.burn_in < self.sweeps:
            raise ValueError(f"burn_in must be a whole number below sweeps ({self.sweeps}), got {self.burn_in!r}")
        if not self._whole(self.threads) or self.threads < 0:
            raise ValueError(f"threads must be a whole number (0 = torch's default), got {self.threads!r}")
        if not isinstance(self.refit, bool):
            raise ValueError(f"refit must be True or False, got {self.refit!r}")
        for name in ("lr", "init_std", "sample_init_std", "tolerance", "warm_ridge"):
            if not finite_number(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("reg", "bias_reg"):
            if not finite_number(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative number, got {getattr(self, name)!r}")
        if not finite_number(self.val_fraction) or not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction!r}")

    @staticmethod
    def _whole(value: Any) -> bool:
        """A Python int, not a bool (nor a numpy int, which the manifest's JSON could not hold)."""
        return isinstance(value, int) and not isinstance(value, bool)

    def implicit_sides(self, n_ratings: int) -> str:
        """What ``implicit`` means for ``n_ratings`` training ratings ('auto' resolved)."""
        if self.implicit != "auto":
            return self.implicit
        return "both" if n_ratings <= IMPLICIT_AUTO_LIMIT else "none"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


@cache
def field_docs() -> dict[str, str]:
    """Each :class:`TrainConfig` field's docstring (the string literal under it in the
    class body), as plain text: the command line's help, and the source of
    :func:`one_method_settings`. Empty where the source is not installed (only
    compiled files): the help then lacks the texts, and every setting counts as
    used by both methods."""
    try:
        source = inspect.getsource(TrainConfig)
    except (OSError, TypeError):
        return {}
    body = ast.parse(textwrap.dedent(source)).body[0].body
    plain = lambda text: re.sub(r":\w+:`([^`]+)`", r"\1", " ".join(text.split())).replace("``", "")  # reST roles and literals
    return {
        node.target.id: plain(after.value.value)
        for node, after in zip(body, body[1:])
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)
    }


def one_method_settings() -> dict[str, str]:
    """The settings that one method alone reads, each with that method: those whose
    docstring starts with ``(gibbs)`` or ``(adam)``; the other method ignores them."""
    marks = {f"({method})": method for method in METHODS}
    return {name: marks[doc.split()[0]] for name, doc in field_docs().items() if doc and doc.split()[0] in marks}
