"""Validation metrics used as training hooks: early stopping and model selection on held-out data.

The validation split (``data.split.validation_split``) holds out the last part of the training data
(temporal runs) or a validation file / a seeded per-user sample (external splits); its ``train`` part is
what the model is fitted on while selecting, its ``test`` part what it is scored on, with the same
protocol as the final evaluation (exclusions, segments) and each user's features as of
``valid.user_as_of``. Nothing here reads the test part of the real split.
"""

from __future__ import annotations

from typing import Any, Callable

from twotower_hgnn import errors
from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.eval.baselines import rank_with_item_tower
from twotower_hgnn.eval.metrics import compute_metrics
from twotower_hgnn.eval.protocol import build_protocol
from twotower_hgnn.models.encode import EncodableModel, user_vectors


class ValidationError(errors.DataError):
    """A validation split that cannot score a model (names the target type)."""


def two_tower_validator(
    ds: Dataset, valid: Any, target: str, k: int = 10, exclude_seen: bool = True, sample_users: int = 0, seed: int = 0
) -> Callable[[EncodableModel], float]:
    """``score(result) -> float``: HR@``k`` of a two-tower result on the validation users of ``target``
    (all segments; ``sample_users`` > 0: a seeded sample of at most that many per segment,
    ``eval.protocol.build_protocol``'s ``sample``), user features as of each user's validation as-of time."""
    proto = build_protocol(ds, valid, [target], exclude_seen=exclude_seen, sample=(sample_users, seed))
    tp = proto.targets.get(target)
    if tp is None or tp.n_users == 0:
        raise ValidationError(
            f"the validation split has no {target} user with a {target} stream to score; "
            "use a larger validation fraction or file"
        )
    as_of = valid.user_as_of(tp.users)

    def score(res: EncodableModel) -> float:
        uv = user_vectors(res, ds, valid.train, tp.users, as_of)
        ranked = rank_with_item_tower(tp, uv, res).items  # the host item vectors dropped before the search
        return float(compute_metrics(ranked, tp.relevant, tp.catalogue, k=k)[f"hr@{k}"])

    return score
