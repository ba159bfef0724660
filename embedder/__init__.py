"""Train biased matrix factorization on MovieLens and export a verified bundle.

Only the training modules import torch, so the bundle, the model object and the vocabularies serve
torch-free readers.
"""

from pathlib import Path

__all__ = ["DEFAULT_ARTIFACTS", "DEFAULT_BUNDLE", "__version__"]
__version__ = "0.1.0"

DEFAULT_ARTIFACTS = Path("artifacts")
"""Where ``train`` publishes versioned bundles (``bundles/``) and the ``current`` link."""
DEFAULT_BUNDLE = DEFAULT_ARTIFACTS / "current"
"""The bundle every command and the server use unless told otherwise."""
