"""twotower_hgnn: a JAX reimplementation of Spotify's 2T-HGNN audiobook recommender."""

__version__ = "0.2.0"
