"""Seeded, vectorised generator of Spotify-shaped audiobook + podcast data (the paper, §7).

Generative story (every step is one vectorised NumPy pass; no per-user Python loop):

1. **Topics.** ``K`` latent topics with a mildly skewed popularity. Each topic has a unit content
   direction (``content_dim``), a music direction (``music_dim``), a genre/theme (word list), a
   preferred country/language and a mean listener age. Topics are shared by both item types.
2. **Items.** ``n_podcasts ≈ 14 × n_audiobooks``. Each item has one topic (drawn by topic
   popularity) and a log-normal popularity weight (``item_pop_sigma_*``: σ≈1.68 puts ≈80 % of the
   mass on the top 20 %). Content vector = topic direction + isotropic noise (same-topic cosine
   ≈ 1/(1+noise²)), L2-normalised. Small scales also get text: a title and a description built from
   the topic's words with some words from other topics (so an SBERT encoder sees real signal).
3. **Users.** Log-normal activity (``user_activity_sigma`` ≈ 1.35 puts ≈75 % of streams on the top
   25 % of users) scaled to ``mean_interactions``. A sparse taste over 3 topics (Dirichlet weights).
   Segments: podcast-only (most), audiobook+podcast, audiobook-only (``frac_ab_users`` and
   ``frac_ab_also_pc`` keep > 70 % of audiobook listeners on podcasts). Some audiobook listeners
   *adopt* audiobooks during the window (their audiobook activity starts at the adoption time) — the
   cold-start users of the test period. Age, country and the music vector follow the main topic.
4. **Engagements.** Per user ``n_u`` engagements: type (audiobook share of the user's segment),
   topic (taste, or an exploration draw), item (popularity within the (type, topic) group), time
   (uniform over the user's active part of the ``days`` window).
5. **Events.** A podcast engagement is a ``stream`` (sometimes plus a ``follow``). An audiobook
   engagement is either a direct ``stream`` or starts with a weak signal (``preview``/``follow``/
   ``intent_to_pay``) that converts into a stream of the same item a few days later with a
   signal-specific probability (follow highest), so weak signals predict future streams.

``tests/test_data_synthetic.py`` checks the calibration figures on the ``tiny`` scale.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import ndtri

from twotower_hgnn.data.readers import build_dataset
from twotower_hgnn.data.schema import EVENTS, Dataset
from twotower_hgnn.data.synthetic_config import (  # re-exported
    COUNTRIES,
    DAY,
    SCALES,
    START,  # noqa: F401 (re-exported)
    SyntheticConfig,
)
from twotower_hgnn.data.synthetic_text import THEMES, _texts  # THEMES re-exported
from twotower_hgnn.rng import np_rng


# ------------------------------------------------------------------------------------- helpers
def _ids(prefix: str, n: int) -> pd.Series:
    """Compact Arrow-backed string ids ``prefix0000123``."""
    width = max(1, len(str(max(n - 1, 0))))
    arr = np.char.add(prefix, np.char.zfill(np.arange(n).astype(f"U{width}"), width))
    return pd.Series(pd.arrays.ArrowStringArray(pa.array(arr)))


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _lognormal_weights(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Log-normal popularity at stratified quantiles (randomly permuted): the realised concentration
    matches the target even for a few dozen items, unlike i.i.d. draws."""
    q = (rng.permutation(n) + 0.5) / max(n, 1)
    return np.exp(sigma * ndtri(q))


def _topic_mass(topic: np.ndarray, weight: np.ndarray, topic_p: np.ndarray) -> np.ndarray:
    """Per topic: its items' popularity mass relative to the mass its share of users expects.

    Multiplying a user's topic preference by this keeps an item's expected streams proportional to
    its own global popularity weight, whatever the (random) number of items in its topic.
    """
    if weight.size == 0:
        return np.zeros_like(topic_p)
    mass = np.bincount(topic, weights=weight, minlength=topic_p.shape[0])
    return mass / mass.sum() / topic_p


def _topic_cdf(tastes: np.ndarray, taste_w: np.ndarray, rel_mass: np.ndarray) -> np.ndarray:
    """float ``[n_users, 2]`` cumulative choice probabilities over a user's 3 taste topics."""
    w = taste_w * rel_mass[tastes]
    tot = w.sum(1, keepdims=True)
    w = np.where(tot > 0, w / np.where(tot > 0, tot, 1.0), taste_w)
    return np.cumsum(w, axis=1)[:, :2]


def _assign_topics(rng: np.random.Generator, n: int, topic_p: np.ndarray) -> np.ndarray:
    """Topic per item; the first min(n, K) items cover every topic so small groups are not empty."""
    k = topic_p.shape[0]
    t = rng.choice(k, size=n, p=topic_p)
    m = min(n, k)
    t[:m] = rng.permutation(k)[:m]
    return rng.permutation(t).astype(np.int32)


class _GroupSampler:
    """Draws items of one type by popularity within a topic (empty topic -> whole type)."""

    def __init__(self, topic: np.ndarray, weight: np.ndarray, n_topics: int, offset: int):
        order = np.argsort(topic, kind="stable")
        self.items = order.astype(np.int64) + offset
        self.cum = np.cumsum(weight[order])
        total = self.cum[-1]
        bounds = np.searchsorted(topic[order], np.arange(n_topics + 1), side="left")
        cum0 = np.concatenate([[0.0], self.cum])
        self.lo = cum0[bounds[:-1]]
        self.hi = cum0[bounds[1:]]
        empty = self.hi <= self.lo
        self.lo[empty], self.hi[empty] = 0.0, total

    def sample(self, rng: np.random.Generator, topics: np.ndarray) -> np.ndarray:
        target = self.lo[topics] + rng.random(topics.shape[0]) * (self.hi[topics] - self.lo[topics])
        pos = np.minimum(np.searchsorted(self.cum, target, side="right"), self.cum.shape[0] - 1)
        return self.items[pos]


# ------------------------------------------------------------------------------------- generate
@dataclasses.dataclass
class _Topics:
    """Step 1: topic popularity and the per-topic content/music directions, country and age."""

    p: np.ndarray
    direction: np.ndarray
    music: np.ndarray
    country: np.ndarray
    age: np.ndarray


@dataclasses.dataclass
class _Items:
    """Step 2: topic and popularity weight of every audiobook and podcast (audiobooks first)."""

    ab_topic: np.ndarray
    pc_topic: np.ndarray
    ab_w: np.ndarray
    pc_w: np.ndarray
    item_topic: np.ndarray


@dataclasses.dataclass
class _Users:
    """Step 3: per-user engagement count, taste, segment, adoption time and profile."""

    n_eng: np.ndarray
    tastes: np.ndarray
    taste_w: np.ndarray
    is_ab: np.ndarray
    share: np.ndarray
    adopt: np.ndarray
    age: np.ndarray
    country_idx: np.ndarray
    music: np.ndarray


@dataclasses.dataclass
class _Engagements:
    """Step 4: one row per engagement (user, audiobook or not, item, time in seconds from start)."""

    user: np.ndarray
    is_ab: np.ndarray
    item: np.ndarray
    time: np.ndarray


def _resolve_config(cfg_or_scale: SyntheticConfig | str, overrides: Mapping[str, object]) -> SyntheticConfig:
    """The scale's (or given) config with ``overrides`` applied, checked for >= 1 topic, user and item."""
    if isinstance(cfg_or_scale, str) and cfg_or_scale not in SCALES:
        raise ValueError(f"unknown synthetic scale {cfg_or_scale!r}; choose from {list(SCALES)}")
    cfg = SCALES[cfg_or_scale] if isinstance(cfg_or_scale, str) else cfg_or_scale
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    K, n_ab, n_pc, n_u = cfg.n_topics, cfg.n_audiobooks, cfg.n_podcasts, cfg.n_users
    if min(K, n_u) < 1 or n_ab < 0 or n_pc < 0 or n_ab + n_pc < 1:
        raise ValueError(f"synthetic config {cfg.name!r}: need >= 1 topic, user and item")
    return cfg


def _gen_topics(rt: np.random.Generator, cfg: SyntheticConfig) -> _Topics:
    """Step 1 on the ``topics`` stream."""
    K = cfg.n_topics
    topic_p = 1.0 / (np.arange(K) + 3.0)
    topic_p = rt.permutation(topic_p / topic_p.sum())
    topic_dir = _normalise(rt.standard_normal((K, max(cfg.content_dim, 1))))
    topic_music = _normalise(rt.standard_normal((K, max(cfg.music_dim, 1))))
    topic_country = rt.integers(0, len(COUNTRIES), K)
    topic_age = rt.uniform(22, 55, K)
    return _Topics(topic_p, topic_dir, topic_music, topic_country, topic_age)


def _gen_items(ri: np.random.Generator, cfg: SyntheticConfig, topic_p: np.ndarray) -> _Items:
    """Step 2 on the ``items`` stream."""
    n_ab, n_pc = cfg.n_audiobooks, cfg.n_podcasts
    ab_topic = _assign_topics(ri, n_ab, topic_p) if n_ab else np.zeros(0, np.int32)
    pc_topic = _assign_topics(ri, n_pc, topic_p) if n_pc else np.zeros(0, np.int32)
    ab_w = _lognormal_weights(ri, n_ab, cfg.item_pop_sigma_ab)
    pc_w = _lognormal_weights(ri, n_pc, cfg.item_pop_sigma_pc)
    return _Items(ab_topic, pc_topic, ab_w, pc_w, np.concatenate([ab_topic, pc_topic]))


def _gen_users(ru: np.random.Generator, cfg: SyntheticConfig, topics: _Topics, n_u: int | None = None) -> _Users:
    """Step 3 on the ``users`` stream, for ``n_u`` users (None = ``cfg.n_users``; a chunk of users draws its
    own stream, see :mod:`twotower_hgnn.data.synthetic_parquet`)."""
    K, n_ab, n_pc = cfg.n_topics, cfg.n_audiobooks, cfg.n_podcasts
    n_u = cfg.n_users if n_u is None else int(n_u)
    topic_p = topics.p
    act = ru.lognormal(0.0, cfg.user_activity_sigma, n_u)
    eng_target = cfg.mean_interactions / cfg.expected_events_per_engagement()
    n_eng = np.maximum(1, np.round(act * (eng_target / act.mean()))).astype(np.int64)
    tastes = np.stack([ru.choice(K, n_u, p=topic_p) for _ in range(3)], axis=1).astype(np.int32)
    taste_w = ru.dirichlet(np.full(3, cfg.taste_alpha), n_u)
    taste_w = -np.sort(-taste_w, axis=1)  # main topic first
    seg = ru.random(n_u)
    is_ab = seg < cfg.frac_ab_users if n_ab else np.zeros(n_u, bool)
    ab_only = is_ab & (ru.random(n_u) >= cfg.frac_ab_also_pc) if n_pc else is_ab.copy()
    if not n_pc:
        is_ab[:] = True
        ab_only[:] = True
    share = np.where(ab_only, 1.0, np.where(is_ab, ru.beta(2.0, 2.0 / max(cfg.ab_share, 1e-6) - 2.0, n_u), 0.0))
    adopt = np.where(is_ab & (ru.random(n_u) < cfg.frac_adopt_in_window), ru.uniform(0, cfg.days * DAY, n_u), 0.0)
    adopt = np.where(ab_only, np.minimum(adopt, (cfg.days - 1) * DAY), adopt)
    main = tastes[np.arange(n_u), 0]
    age = np.clip(np.round(topics.age[main] + ru.normal(0, 8, n_u)), 16, 80).astype(np.int64)
    country_idx = np.where(ru.random(n_u) < 0.5, topics.country[main], ru.integers(0, len(COUNTRIES), n_u))
    music = _normalise(
        (taste_w[:, :, None] * topics.music[tastes]).sum(1)
        + 0.5 * ru.standard_normal((n_u, max(cfg.music_dim, 1))) / np.sqrt(max(cfg.music_dim, 1))
    )
    return _Users(n_eng, tastes, taste_w, is_ab, share, adopt, age, country_idx, music)


@dataclasses.dataclass
class _ItemDraw:
    """What step 4 needs of the items, built once (no randomness): per-type topic mass and samplers."""

    ab_mass: np.ndarray
    pc_mass: np.ndarray
    ab: _GroupSampler | None
    pc: _GroupSampler | None

    @classmethod
    def build(cls, cfg: SyntheticConfig, topics: _Topics, items: _Items) -> "_ItemDraw":
        K, n_ab = cfg.n_topics, cfg.n_audiobooks
        return cls(
            _topic_mass(items.ab_topic, items.ab_w, topics.p),
            _topic_mass(items.pc_topic, items.pc_w, topics.p),
            _GroupSampler(items.ab_topic, items.ab_w, K, 0) if n_ab else None,
            _GroupSampler(items.pc_topic, items.pc_w, K, n_ab) if cfg.n_podcasts else None,
        )


def _gen_engagements(
    re_: np.random.Generator,
    cfg: SyntheticConfig,
    topics: _Topics,
    items: _Items,
    users: _Users,
    draw: _ItemDraw | None = None,
) -> _Engagements:
    """Step 4 on the ``engagements`` stream: type, topic, item and time of every engagement (``user`` is
    the row in ``users``; ``draw``: the items' :class:`_ItemDraw`, None = built here)."""
    K, n_u = cfg.n_topics, users.n_eng.shape[0]
    topic_p, tastes, taste_w = topics.p, users.tastes, users.taste_w
    draw = _ItemDraw.build(cfg, topics, items) if draw is None else draw
    ab_mass, pc_mass = draw.ab_mass, draw.pc_mass
    n_total = int(users.n_eng.sum())
    user = np.repeat(np.arange(n_u, dtype=np.int64), users.n_eng)
    eng_ab = re_.random(n_total) < users.share[user]
    u01 = re_.random(n_total)
    topic = np.empty(n_total, np.int64)
    explore = re_.random(n_total) < cfg.explore
    for m, mass in ((eng_ab, ab_mass), (~eng_ab, pc_mass)):
        if not m.any() or mass.sum() == 0:
            continue
        um = user[m]
        slot = (u01[m][:, None] > _topic_cdf(tastes, taste_w, mass)[um]).sum(1)
        p_explore = topic_p * mass / (topic_p * mass).sum()
        topic[m] = np.where(explore[m], re_.choice(K, int(m.sum()), p=p_explore), tastes[um, slot])
    item = np.empty(n_total, np.int64)
    if draw.ab is not None:
        m = eng_ab
        item[m] = draw.ab.sample(re_, topic[m])
    if draw.pc is not None:
        m = ~eng_ab
        item[m] = draw.pc.sample(re_, topic[m])
    lo = np.where(eng_ab, users.adopt[user], 0.0)
    t_eng = lo + re_.random(n_total) * (cfg.days * DAY - lo)
    return _Engagements(user, eng_ab, item, t_eng)


def _gen_events(rv: np.random.Generator, cfg: SyntheticConfig, eng: _Engagements) -> tuple[np.ndarray, ...]:
    """Step 5 on the ``events`` stream: (event code int8, user, item, Unix time int64) per event."""
    user, item, t_eng, eng_ab = eng.user, eng.item, eng.time, eng.is_ab
    n_total = user.shape[0]
    end = cfg.days * DAY
    pw = np.asarray(cfg.p_weak, dtype=np.float64)
    kind = np.searchsorted(np.cumsum(pw), rv.random(n_total), side="right")  # 0..2 weak, 3 = none
    weak = eng_ab & (kind < 3)
    conv_p = np.asarray(cfg.p_convert + (1.0,))[kind]
    delay = rv.exponential(cfg.convert_days * DAY, n_total)
    t_stream = np.where(weak, t_eng + delay, t_eng)
    has_stream = np.where(weak, rv.random(n_total) < conv_p, True) & (t_stream < end)
    pc_fol = ~eng_ab & (rv.random(n_total) < cfg.pc_follow)
    weak_code = np.array([EVENTS.index(e) for e in ("preview", "follow", "intent_to_pay")], np.int8)
    ev = np.concatenate(
        [
            np.full(int(has_stream.sum()), EVENTS.index("stream"), np.int8),
            weak_code[kind[weak]],
            np.full(int(pc_fol.sum()), EVENTS.index("follow"), np.int8),
        ]
    )
    e_user = np.concatenate([user[has_stream], user[weak], user[pc_fol]])
    e_item = np.concatenate([item[has_stream], item[weak], item[pc_fol]])
    e_time = np.concatenate([t_stream[has_stream], t_eng[weak], np.minimum(t_eng[pc_fol] + 60, end - 1)])
    e_time = (cfg.start + np.floor(e_time)).astype(np.int64)
    return ev, e_user, e_item, e_time


def _items_columns(
    rtx: np.random.Generator, cfg: SyntheticConfig, topics: _Topics, item_topic: np.ndarray
) -> dict[str, np.ndarray]:
    """The items table's columns but ``item_id`` (NumPy str arrays); language (and text, if ``emit_text``)
    on the ``text`` stream."""
    n_ab = cfg.n_audiobooks
    n_items = item_topic.shape[0]
    langs = np.array([lang for _, lang in COUNTRIES])
    lang = np.where(rtx.random(n_items) < 0.6, langs[topics.country[item_topic]], "en")
    genre = np.array([g for g, _ in THEMES])[item_topic % len(THEMES)]
    if cfg.emit_text:
        title, desc = _texts(rtx, item_topic, n_ab)
    else:
        title = desc = np.full(n_items, "", dtype="U1")
    item_type = np.where(np.arange(n_items) < n_ab, "audiobook", "podcast")
    return {"item_type": item_type, "title": title, "description": desc, "language": lang, "genre": genre}


def _items_table(
    rtx: np.random.Generator, cfg: SyntheticConfig, topics: _Topics, item_topic: np.ndarray, item_ids: pd.Series
) -> pd.DataFrame:
    """The items table (:func:`_items_columns` with the ids)."""
    cols = _items_columns(rtx, cfg, topics, item_topic)
    return pd.DataFrame(
        {
            "item_id": item_ids,
            "item_type": pd.Series(cols["item_type"]).astype(object),
            **{k: cols[k].astype(object) for k in ("title", "description", "language", "genre")},
        }
    )


def _interactions_table(events: tuple[np.ndarray, ...], user_ids: pd.Series, item_ids: pd.Series) -> pd.DataFrame:
    """The interactions table from :func:`_gen_events`' arrays (ids and events as categoricals)."""
    ev, e_user, e_item, e_time = events
    return pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(e_user, categories=pd.Index(user_ids)),
            "item_id": pd.Categorical.from_codes(e_item, categories=pd.Index(item_ids)),
            "timestamp": e_time,
            "event": pd.Categorical.from_codes(ev.astype(np.int64), categories=list(EVENTS)),
        }
    )


def _content_vectors(
    rc: np.random.Generator, cfg: SyntheticConfig, topic_dir: np.ndarray, item_topic: np.ndarray
) -> np.ndarray:
    """float32 ``[n_items, content_dim]``: topic direction + noise on the ``content`` stream, L2-normalised."""
    n_items = item_topic.shape[0]
    noise = rc.standard_normal((n_items, cfg.content_dim)).astype(np.float32) * np.float32(
        cfg.content_noise / np.sqrt(cfg.content_dim)
    )
    return _normalise(topic_dir[item_topic] + noise)


def _dataset_meta(cfg: SyntheticConfig, seed: int) -> dict:
    """``Dataset.meta`` of a synthetic dataset: scale, seed, config, time bounds and the split rule."""
    return {
        "scale": cfg.name,
        "seed": seed,
        "config": dataclasses.asdict(cfg),
        "start": cfg.start,
        "end": cfg.start + cfg.days * DAY,
        "split": {"test_days_from_end": 14, "history_days": cfg.days},
    }


def generate(cfg_or_scale: SyntheticConfig | str, seed: int = 0, **overrides) -> Dataset:
    """Generates a synthetic :class:`Dataset` (see module docstring). ``overrides`` replace config fields."""
    cfg = _resolve_config(cfg_or_scale, overrides)
    t0 = time.perf_counter()
    r = lambda *k: np_rng(seed, "synthetic", *k)  # noqa: E731  independent named streams

    topics = _gen_topics(r("topics"), cfg)  # 1. topics
    items = _gen_items(r("items"), cfg, topics.p)  # 2. items (audiobooks first: global node order)
    users = _gen_users(r("users"), cfg, topics)  # 3. users
    eng = _gen_engagements(r("engagements"), cfg, topics, items, users)  # 4. engagements
    events = _gen_events(r("events"), cfg, eng)  # 5. events
    del eng

    # tables
    user_ids = _ids("u", cfg.n_users)
    item_ids = pd.concat([_ids("ab", cfg.n_audiobooks), _ids("pc", cfg.n_podcasts)], ignore_index=True)
    countries = np.array([c for c, _ in COUNTRIES])
    items_df = _items_table(r("text"), cfg, topics, items.item_topic, item_ids)
    users_df = pd.DataFrame(
        {"user_id": user_ids, "age": users.age, "country": countries[users.country_idx].astype(object)}
    )
    inter = _interactions_table(events, user_ids, item_ids)
    item_vectors = None
    if cfg.content_dim > 0:
        item_vectors = _content_vectors(r("content"), cfg, topics.direction, items.item_topic)
    meta = {**_dataset_meta(cfg, seed), "generate_seconds": None}
    ds = build_dataset(
        inter,
        items_df,
        users_df,
        name=f"synthetic-{cfg.name}",
        item_vectors=item_vectors,
        music=users.music,
        meta=meta,
        validate=False,
    )
    # Ground truth for diagnostics/tests (not model inputs).
    ds.truth = {
        "item_topic": items.item_topic,
        "user_topics": users.tastes,
        "user_is_ab": users.is_ab,
        "user_adopt": users.adopt,
    }
    ds.meta["generate_seconds"] = time.perf_counter() - t0
    return ds


def calibration(ds: Dataset) -> Mapping[str, float]:
    """The paper's §7 figures measured on a dataset (any source)."""
    it = ds.interactions
    ev = it["event_code"].to_numpy()
    u = it["user_idx"].to_numpy()
    i = it["item_idx"].to_numpy()
    n_ab = int(ds.item_type_counts.get("audiobook", 0))
    stream = ev == EVENTS.index("stream")
    is_ab_item = i < n_ab

    def top_share(counts: np.ndarray, frac: float) -> float:
        c = np.sort(counts)[::-1]
        k = max(1, int(round(frac * c.shape[0])))
        return float(c[:k].sum() / max(c.sum(), 1))

    ab_item_streams = np.bincount(i[stream & is_ab_item], minlength=n_ab)[:n_ab]
    user_streams = np.bincount(u[stream], minlength=ds.num_users)
    ab_users = np.zeros(ds.num_users, bool)
    ab_users[u[is_ab_item]] = True
    pc_stream_users = np.zeros(ds.num_users, bool)
    pc_stream_users[u[stream & ~is_ab_item]] = True
    n_pc = ds.num_items - n_ab
    return {
        "podcasts_per_audiobook": float(n_pc / max(n_ab, 1)),
        "top20_audiobooks_stream_share": top_share(ab_item_streams, 0.2),
        "top25_users_stream_share": top_share(user_streams, 0.25),
        "frac_users_with_audiobooks": float(ab_users.mean()),
        "frac_ab_users_streaming_podcasts": float(pc_stream_users[ab_users].mean()) if ab_users.any() else 0.0,
        "mean_interactions_per_user": float(len(it) / max(ds.num_users, 1)),
        "days": float((it["timestamp"].max() - it["timestamp"].min()) / DAY),
    }
