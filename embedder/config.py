"""Training configuration: one frozen dataclass, written into the manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`embedder.train.train`.

    The defaults are the tuned settings for MovieLens 100K (see the README for the
    figures they reach). Every field is validated on construction, so a bad value
    from the command line fails before any data is read.
    """

    dim: int = 64
    """Embedding size d of p_u and q_i."""
    epochs: int = 60
    """Upper bound on training epochs; early stopping usually ends sooner."""
    batch_size: int = 1024
    """Ratings per optimisation step."""
    lr: float = 0.005
    """Adam learning rate."""
    reg: float = 0.12
    """L2 weight on the embeddings a batch touches (per rating)."""
    bias_reg: float = 0.005
    """L2 weight on the biases a batch touches (per rating)."""
    init_std: float = 0.05
    """Standard deviation of the normal initialisation of the embeddings."""
    val_fraction: float = 0.1
    """Fraction of the TRAINING rows held out for early stopping."""
    patience: int = 3
    """Epochs without a validation improvement before stopping."""
    seed: int = 42
    """Seed of the validation carve-out, the initialisation and the batch order."""
    device: str = "auto"
    """'cpu', 'cuda' or 'auto' (CUDA when available)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Free-form notes recorded with the config (not used by training)."""

    def __post_init__(self) -> None:
        positive_ints = ("dim", "epochs", "batch_size")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience must be a positive integer, got {self.patience!r}")
        for name in ("lr", "init_std"):
            if not self._finite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("reg", "bias_reg"):
            if not self._finite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative number, got {getattr(self, name)!r}")
        if not self._finite(self.val_fraction) or not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")

    @staticmethod
    def _finite(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Rebuild a config from :meth:`to_dict` output; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        return cls(**values)
