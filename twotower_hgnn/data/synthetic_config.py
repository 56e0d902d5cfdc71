"""Sizes, calibration knobs and named scales of the synthetic generator (:mod:`twotower_hgnn.data.synthetic`).

``synthetic`` re-exports every name defined here (``DAY``, ``START``, ``COUNTRIES``,
:class:`SyntheticConfig`, ``SCALES``).
"""

from __future__ import annotations

import dataclasses

DAY = 86_400
START = 1_688_169_600  # 2023-07-01 00:00:00 UTC

COUNTRIES: tuple[tuple[str, str], ...] = (
    ("US", "en"),
    ("GB", "en"),
    ("SE", "sv"),
    ("DE", "de"),
    ("FR", "fr"),
    ("ES", "es"),
    ("BR", "pt"),
    ("MX", "es"),
    ("IN", "en"),
    ("AU", "en"),
)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and calibration knobs of the generator (defaults follow the paper's §7).

    Attributes:
      mean_interactions: target mean number of *events* (all types) per user over ``days``.
      frac_ab_users: fraction of users with any audiobook engagement in the window.
      frac_ab_also_pc: fraction of audiobook users who also stream podcasts (paper: > 70 %).
      ab_share: mean fraction of engagements that are audiobooks for audiobook+podcast users.
      frac_adopt_in_window: fraction of audiobook users whose first audiobook falls inside the window.
      item_pop_sigma_ab / _pc: log-normal sigma of item popularity (1.68 -> top 20 % hold ~80 %).
      user_activity_sigma: log-normal sigma of user activity (1.35 -> top 25 % hold ~75 %).
      explore: probability that an engagement ignores the user's taste (topic drawn by popularity).
      p_weak: probability that an audiobook engagement starts with (preview, follow, intent_to_pay).
      p_convert: probability that the weak signal is followed by a stream of the same item.
      convert_days: mean delay (days, exponential) from weak signal to stream.
      pc_follow: probability that a podcast stream comes with a follow.
      content_dim: dimension of ``item_vectors`` (0 = emit none).
      content_noise: noise norm relative to the unit topic direction.
      emit_text: build titles/descriptions from topic words (small scales only).
      music_dim: dimension of the user music vector.
    """

    name: str
    n_users: int
    n_audiobooks: int
    n_podcasts: int
    n_topics: int
    mean_interactions: float = 30.0
    days: int = 90
    start: int = START
    frac_ab_users: float = 0.2
    frac_ab_also_pc: float = 0.85
    ab_share: float = 0.3
    frac_adopt_in_window: float = 0.4
    item_pop_sigma_ab: float = 1.75
    item_pop_sigma_pc: float = 1.5
    user_activity_sigma: float = 1.35
    taste_alpha: float = 0.5
    explore: float = 0.1
    p_weak: tuple[float, float, float] = (0.15, 0.08, 0.07)
    p_convert: tuple[float, float, float] = (0.45, 0.75, 0.4)
    convert_days: float = 3.0
    pc_follow: float = 0.05
    content_dim: int = 64
    content_noise: float = 1.0
    emit_text: bool = False
    music_dim: int = 16

    def expected_events_per_engagement(self) -> float:
        """Mean events one engagement produces (used to hit ``mean_interactions``)."""
        pw = float(sum(self.p_weak))
        ab = (1.0 - pw) + sum(p * (1.0 + c) for p, c in zip(self.p_weak, self.p_convert))
        pc = 1.0 + self.pc_follow
        n_ab = self.frac_ab_users * (self.frac_ab_also_pc * self.ab_share + (1 - self.frac_ab_also_pc))
        return n_ab * ab + (1 - n_ab) * pc


SCALES: dict[str, SyntheticConfig] = {
    # tests: seconds, text + 32-d vectors
    "tiny": SyntheticConfig(
        "tiny", n_users=800, n_audiobooks=40, n_podcasts=560, n_topics=8, content_dim=32, emit_text=True, music_dim=8
    ),
    # text encodable in minutes on a CPU (15K items)
    "small": SyntheticConfig(
        "small", n_users=20_000, n_audiobooks=1_000, n_podcasts=14_000, n_topics=24, emit_text=True
    ),
    "medium": SyntheticConfig("medium", n_users=200_000, n_audiobooks=10_000, n_podcasts=140_000, n_topics=64),
    "large": SyntheticConfig("large", n_users=1_000_000, n_audiobooks=50_000, n_podcasts=700_000, n_topics=128),
    "xlarge": SyntheticConfig("xlarge", n_users=3_000_000, n_audiobooks=100_000, n_podcasts=1_400_000, n_topics=256),
    # the paper's §5.1: 10M users, 3.5M+ podcasts, 250K+ audiobooks
    "paper": SyntheticConfig("paper", n_users=10_000_000, n_audiobooks=250_000, n_podcasts=3_500_000, n_topics=512),
}
