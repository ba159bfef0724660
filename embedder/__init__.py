"""Train biased matrix factorization on MovieLens and export a verified bundle.

Importing this package is cheap: torch is imported only by the modules that
train (``embedder.adam``, ``embedder.gibbs``, ``embedder.train``, ``embedder.export``), so
``embedder.bundle``, ``embedder.model`` (the model object) and ``embedder.vocab``
serve torch-free readers.
"""

from pathlib import Path

__all__ = ["DEFAULT_ARTIFACTS", "DEFAULT_BUNDLE", "__version__"]
__version__ = "0.1.0"

DEFAULT_ARTIFACTS = Path("artifacts")
"""Where ``train`` publishes versioned bundles (``bundles/``) and the ``current`` link."""
DEFAULT_BUNDLE = DEFAULT_ARTIFACTS / "current"
"""The bundle every command and the server use unless told otherwise."""
