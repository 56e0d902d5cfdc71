"""User and item features of the two-tower model, computed without label leakage.

User features (the paper, §1.3, §4): age (bucketed), country (vocabulary + OOV bucket), the optional music
vector, and the mean item embedding (HGNN, or content for the "2T" baseline) of the items of each item
type of the data (``Dataset.item_types``: the audiobooks and, separately, the podcasts on the paper's data)
the user streamed or weakly interacted with (follow / preview / intent_to_pay) inside the history window.

**As-of semantics.** The history of a query (user u, time t) is every interaction of u with a counted
event and timestamp in ``[t - window, t)`` — strictly before t. A training example (u, target item,
t_target) is queried at t_target, so the target interaction (and anything at the same second or
later) can never be in its own input, and a user's first audiobook is a genuine cold-start example.
Evaluation and serving query at the split / request time.

Each interaction row counts once (a user who streamed a podcast five times weights it five times):
repeated engagement is signal, and a distinct-items-within-a-sliding-window mean cannot be done with
prefix sums. Documented in BUILD_NOTES.md, appendix E.

Encodings of age, country, language and genre (the paper's §9 leaves them open): see
:mod:`twotower_hgnn.features_encoding`.

**Layout.** This module is the public entry point and re-exports every name of:
* :mod:`twotower_hgnn.features_bundles` — the bundles (:class:`UserFeatures`, :class:`ItemFeatures`,
  :class:`TwoTowerBatch`, :class:`FeatureVocab`, :class:`TrainingExamples`, :class:`PriorTable`), the
  constants, :class:`FeatureError`, :func:`take_users` / :func:`pad_users`;
* :mod:`twotower_hgnn.features_encoding` — vocabularies, age buckets, :func:`assemble_user_features`,
  the item table (:func:`item_feature_table`, :func:`target_item_range`);
* :mod:`twotower_hgnn.history` — the as-of history (:func:`history_means`, :func:`history_id_tokens`,
  :func:`user_features_as_of`; how it is vectorised) and the leave-one-out variant;
* :mod:`twotower_hgnn.features_examples` — :func:`build_training_examples` and the popularity priors
  (:func:`prior_table`, :func:`smoothed_log_q`).
"""

from __future__ import annotations

from twotower_hgnn.data.schema import EVENTS, ITEM_TYPES, Dataset
from twotower_hgnn.features_bundles import (
    AGE_EDGES,
    DAY_S,
    DEFAULT_HISTORY_EVENTS,
    MAX_AGE,
    N_AGE_BUCKETS,
    FeatureError,
    FeatureVocab,
    ItemFeatures,
    PriorTable,
    TrainingExamples,
    TwoTowerBatch,
    UserFeatures,
    pad_users,
    take_users,
)
from twotower_hgnn.features_encoding import (
    age_buckets,
    assemble_user_features,
    build_vocab,
    encode_vocab,
    item_feature_table,
    target_item_range,
)
from twotower_hgnn.features_examples import build_training_examples, prior_table, smoothed_log_q
from twotower_hgnn.history import history_id_tokens, history_means, user_features_as_of

__all__ = [
    # bundles and constants
    "AGE_EDGES",
    "DAY_S",
    "DEFAULT_HISTORY_EVENTS",
    "MAX_AGE",
    "N_AGE_BUCKETS",
    "FeatureError",
    "FeatureVocab",
    "ItemFeatures",
    "PriorTable",
    "TrainingExamples",
    "TwoTowerBatch",
    "UserFeatures",
    "pad_users",
    "take_users",
    # encoders and the item table
    "age_buckets",
    "assemble_user_features",
    "build_vocab",
    "encode_vocab",
    "item_feature_table",
    "target_item_range",
    # as-of history
    "history_id_tokens",
    "history_means",
    "user_features_as_of",
    # training examples and popularity priors
    "build_training_examples",
    "prior_table",
    "smoothed_log_q",
    # the data schema names this module has always exposed
    "EVENTS",
    "ITEM_TYPES",
    "Dataset",
]
