"""Serving cannot be tipped over: every malformed request is one ServingError line; k is bounded and bucketed.

Served from the tiny pipeline run's self-contained export (``Recommender.load(<version>/export)``).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twotower_hgnn.errors import UserError
from twotower_hgnn.retrieval import K_BUCKETS, k_bucket
from twotower_hgnn.serving import Recommender, ServingError


@pytest.fixture(scope="module")
def served(tiny_run):
    cfg, _ = tiny_run
    export = cfg.version_dir() / "export"
    return Recommender.load(export), Recommender.load(export, target_type="podcast")


def _ids(rec):
    ds = rec.dataset
    ab = ds.items.item_id.iloc[rec.start]
    return ds.users.user_id.iloc[0], ab


NOW = 1_694_000_000
BAD = [
    # k
    (dict(k=0), "k must"),
    (dict(k=-5), "k must"),
    (dict(k=2.5), "k must"),
    (dict(k="10"), "k must"),
    (dict(k=True), "k must"),
    (dict(k=None), "k must"),
    # ids
    (dict(user_id=12), "user_id must be a string"),
    (dict(user_id=["u1"]), "user_id must be a string"),
    (dict(user_id=""), "user_id must be 1 to"),
    (dict(user_id="x" * 10_000), "user_id must be 1 to"),
    (dict(user_id="no-such-user"), "unknown user_id"),
    (dict(user_id="__U__", age=30), "either user_id"),
    # as_of
    (dict(as_of=-10), "as_of -10 is outside"),
    (dict(as_of=float("nan")), "as_of must be integer"),
    (dict(as_of=float("inf")), "as_of must be integer"),
    (dict(as_of=10**30), "as_of .* is outside"),
    (dict(as_of=NOW * 1000), "milliseconds"),
    (dict(as_of="2023-09-01"), "as_of must be integer"),
    (dict(as_of=NOW + 0.5), "as_of must be integer"),
    # demographics
    (dict(age="thirty"), "age must be an integer"),
    (dict(age=400), "age 400 is out of range"),
    (dict(age=30.0), "age must be an integer"),
    (dict(age=10**40), "out of range"),
    (dict(country=46), "country must be a string"),
    (dict(country="X" * 1000), "country must be a string"),
    (dict(music=[1.0, 2.0]), "music must have"),
    (dict(music="abc"), "music must be a list"),
    (dict(music={"a": 1}), "music must be a list"),
    (dict(music=("__M__", "a")), "music must be"),
    (dict(music=("__M__", float("nan"))), "finite"),
    (dict(music=("__M__", 1e300)), "finite"),
    # interactions
    (dict(interactions="stream"), "interactions must be a list"),
    (dict(interactions=5), "interactions must be a list"),
    (dict(interactions=[("__AB__", "stream")]), "expected"),
    (dict(interactions=[None]), "expected"),
    (dict(interactions=[(5, "stream", NOW)]), r"item_id must be a string"),
    (dict(interactions=[("no-such-item", "stream", NOW)]), "not in the catalogue"),
    (dict(interactions=[("__AB__", "like", NOW)]), "event"),
    (dict(interactions=[("__AB__", 3, NOW)]), "event"),
    (dict(interactions=[("__AB__", "stream", -3)]), "timestamp -3 is outside"),
    (dict(interactions=[("__AB__", "stream", float("nan"))]), "timestamp must be integer"),
    (dict(interactions=[("__AB__", "stream", float("inf"))]), "timestamp must be integer"),
    (dict(interactions=[("__AB__", "stream", 1e30)]), "outside 1990-2100"),
    (dict(interactions=[("__AB__", "stream", "yesterday")]), "timestamp must be integer"),
    (dict(interactions=[{"item_id": "__AB__", "event": "stream", "timestamp": NOW, "rating": 5}]), "unknown"),
    (dict(interactions={"item_id": ["__AB__"], "event": ["stream", "stream"], "timestamp": [NOW]}), "differ"),
    (dict(interactions={"item_id": "__AB__", "event": "stream", "timestamp": NOW}), "must be a list"),
    (dict(interactions=[("__AB__", "stream", NOW)] * 10_001), "at most 10000"),
    (dict(interactions=(("__AB__", "stream", NOW) for _ in range(20_000))), "more than 10000"),
    # other fields
    (dict(exclude_consumed="no"), "exclude_consumed must be"),
    (dict(limit=5), "unknown request field"),
]


@pytest.mark.parametrize("kwargs, match", BAD, ids=[f"{i}-{m[:20]}" for i, (_, m) in enumerate(BAD)])
def test_malformed_request_is_one_serving_error(served, kwargs, match):
    rec, _ = served
    uid, ab = _ids(rec)
    if "interactions" in kwargs and isinstance(kwargs["interactions"], list):
        kwargs = {
            "interactions": [
                tuple(ab if x == "__AB__" else x for x in t) if isinstance(t, tuple) else t
                for t in kwargs["interactions"]
            ]
        }
    kwargs = {k: (uid if v == "__U__" else v) for k, v in kwargs.items()}
    if isinstance(kwargs.get("music"), tuple):  # a vector of the model's music width filled with one value
        kwargs["music"] = [kwargs["music"][1]] * rec.result.vocab.d_music
    with pytest.raises(ServingError, match=match) as e:
        rec.recommend(**kwargs)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value) and len(str(e.value)) < 300


def test_request_dicts(served):
    rec, _ = served
    uid, ab = _ids(rec)
    for bad, match in (
        ([1, 2], "JSON object"),
        ({"user_id": uid, "kk": 3}, "unknown request field"),
        ({1: 2}, "unknown"),
    ):
        with pytest.raises(ServingError, match=match):
            rec.recommend_request(bad)
    rows = [{"item_id": ab, "event": "preview", "timestamp": NOW}]
    assert rec.recommend_request({"age": 30, "interactions": rows, "k": 3}) == rec.recommend(
        age=30, interactions=[(ab, "preview", NOW)], k=3
    )


value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
)


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    age=value,
    country=value,
    k=value,
    as_of=value,
    rows=st.lists(
        st.tuples(st.sampled_from(["__AB__", "nope", 7]), st.sampled_from(["stream", "x", None]), value), max_size=3
    ),
)
def test_random_requests_answer_or_refuse(served, age, country, k, as_of, rows):
    """Whatever the values, a request is answered (k best items, finite scores) or refused by a ServingError."""
    rec, _ = served
    _, ab = _ids(rec)
    rows = [tuple(ab if x == "__AB__" else x for x in r) for r in rows]
    try:
        out = rec.recommend(age=age, country=country, k=k, as_of=as_of, interactions=rows)
    except ServingError as e:
        assert "\n" not in str(e)
        return
    assert 1 <= len(out) <= min(k, rec.num_items) and all(math.isfinite(s) for _, _, s in out)


def test_k_is_capped_and_bucketed(served):
    """200 distinct k values compile no more programs than there are k buckets; RSS stays flat."""
    _, rec = served  # the podcast catalogue (hundreds of items): buckets 10, 100 and the catalogue
    uid = rec.dataset.users.user_id.iloc[3]
    n = rec.num_items
    full = rec.recommend(user_id=uid, k=10**12, exclude_consumed=False)
    assert len(full) == n  # capped at the catalogue
    available = len(rec.recommend(user_id=uid, k=n))  # the catalogue minus the user's streamed podcasts
    assert available < n
    lowered: list[str] = []

    def listener(event: str, duration: float, **kw) -> None:
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        traces0 = rec.index.trace_count
        rss0 = psutil.Process().memory_info().rss
        ks = list(range(1, 151)) + [int(x) for x in np.random.default_rng(0).integers(151, 10**9, 50)]
        for k in ks:
            assert len(rec.recommend(user_id=uid, k=k)) == min(k, available)
        rss1 = psutil.Process().memory_info().rss
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    buckets = {k_bucket(k, n) for k in ks}
    assert len(set(ks)) == 200 and buckets <= set(K_BUCKETS) | {n}
    # at most one program per bucket (the catalogue bucket was compiled above, for k = n)
    assert rec.index.trace_count - traces0 <= len(buckets) and len(lowered) <= len(buckets), (len(lowered), buckets)
    assert rss1 - rss0 < 50 * 2**20, f"RSS grew {(rss1 - rss0) / 2**20:.1f} MB over 200 distinct k"
    # a shorter list is the prefix of a longer one (a bucket's top-k truncated)
    assert rec.recommend(user_id=uid, k=7) == rec.recommend(user_id=uid, k=70)[:7]
    assert [i for i, _, _ in full[:5]] == [i for i, _, _ in rec.recommend(user_id=uid, k=5, exclude_consumed=False)]
