"""Train biased matrix factorization on MovieLens and export a verified bundle.

Importing this package is cheap: torch is imported only by the modules that
train (``embedder.model``, ``embedder.train``, ``embedder.export``), so
``embedder.bundle`` and ``embedder.vocab`` serve torch-free readers.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
