"""The two-tower model's architecture and loss settings (:class:`TwoTowerConfig`), importable without
jax (configuration files and ``--print_config`` read them); the model is :mod:`twotower_hgnn.models.two_tower`."""

from __future__ import annotations

import dataclasses

CORRECTIONS: tuple[str, ...] = ("logq", "inverse_frequency", "none")
NEGATIVES: tuple[str, ...] = ("in_batch", "full")


@dataclasses.dataclass(frozen=True)
class TwoTowerConfig:
    """Architecture and loss settings (hashable: safe as a static jit argument).

    Vocabulary sizes (``n_countries`` ...) include the OOV bucket 0 and are filled from the
    :class:`~twotower_hgnn.features.FeatureVocab` by the trainer.
    """

    tower_dims: tuple[int, ...] = (512, 256, 128)
    use_hgnn: bool = True
    normalize: bool = True
    temperature: float = 0.05
    correction: str = "logq"
    mask_accidental_hits: bool = True
    age_embed_dim: int = 8
    country_embed_dim: int = 16
    language_embed_dim: int = 16
    genre_embed_dim: int = 16
    n_countries: int = 1
    n_languages: int = 1
    n_genres: int = 1
    id_dim: int = 0
    n_item_tokens: int = 1
    negatives: str = "in_batch"
    item_bias: bool = False
    personal_scale_init: float | None = None

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}, got {self.correction!r}")
        if not self.tower_dims or any(int(d) <= 0 for d in self.tower_dims):
            raise ValueError(f"tower_dims must be positive ints, got {self.tower_dims}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        object.__setattr__(self, "tower_dims", tuple(int(d) for d in self.tower_dims))

    @property
    def out_dim(self) -> int:
        return self.tower_dims[-1] + (1 if self.item_bias else 0)
