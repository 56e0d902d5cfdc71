"""The HGNN's hyper-parameters (:class:`HGNNConfig`), importable without jax (configuration files and
``--print_config`` read them); the model itself is :mod:`twotower_hgnn.models.hgnn`."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "elu", "leaky_relu", "tanh", "identity")
DTYPES: tuple[str, ...] = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class HGNNConfig:
    """Model hyper-parameters (frozen: hashable, usable as a static jit argument).

    Attributes:
      hidden_dim: width of layers 1..L-1 (256: our choice, the paper gives none).
      out_dim: embedding width (128: matches the two-tower output size; the paper gives none).
      num_layers: message-passing layers L (paper: 2); needs a sampling spec with >= L hops.
      homogeneous: share weights across node types and directions (see module docstring).
      activation: sigma, one of relu/gelu/elu/leaky_relu/tanh/identity (paper: unnamed; ReLU).
      compute_dtype: "float32" or "bfloat16" (matmuls and max in bf16; params stay float32
        masters, the output and its L2 normalisation are float32).
      final_activation: apply sigma in Eq. 3 of the last layer too (default False, see above).
    """

    hidden_dim: int = 256
    out_dim: int = 128
    num_layers: int = 2
    homogeneous: bool = False
    activation: str = "relu"
    compute_dtype: str = "float32"
    final_activation: bool = False

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "out_dim", "num_layers"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"HGNNConfig.{name} must be a positive int, got {v!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"HGNNConfig.activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if self.compute_dtype not in DTYPES:
            raise ValueError(f"HGNNConfig.compute_dtype {self.compute_dtype!r} is not one of {DTYPES}")

    def layer_dims(self, in_dim: int) -> list[tuple[int, int]]:
        """``[(d_in, d_out)]`` per layer."""
        dims = [int(in_dim)] + [self.hidden_dim] * (self.num_layers - 1) + [self.out_dim]
        return list(zip(dims[:-1], dims[1:]))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HGNNConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"HGNNConfig: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)
