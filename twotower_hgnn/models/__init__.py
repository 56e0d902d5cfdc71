"""Models: the heterogeneous GraphSAGE item encoder (``hgnn``) and the two-tower model."""

from twotower_hgnn.models.hgnn import HGNNConfig, hgnn_forward, init_hgnn

__all__ = ["HGNNConfig", "hgnn_forward", "init_hgnn"]
