"""absl flags shared by the pipeline entry points (pipeline, evaluate, ablations)."""
from __future__ import annotations

from absl import flags

from twotower_hgnn.data.split import AUTO

FLAGS = flags.FLAGS


def define_pipeline_flags() -> None:
    flags.DEFINE_enum("dataset", "movielens1m", ["movielens1m", "synthetic", "files"], "Data source.")
    flags.DEFINE_string("scale", "tiny", "Synthetic scale (tiny, small, medium, large, xlarge, paper).")
    flags.DEFINE_integer("data_seed", 0, "Synthetic generator seed.")
    flags.DEFINE_string("interactions", None, "--dataset=files: interactions CSV/Parquet.")
    flags.DEFINE_string("items", None, "--dataset=files: items CSV/Parquet.")
    flags.DEFINE_string("users", None, "--dataset=files: users CSV/Parquet.")
    flags.DEFINE_string("out_dir", "runs", "Root of all pipeline versions.")
    flags.DEFINE_string("as_of", None, "Run as of this ISO date (the split cut; names the version).")
    flags.DEFINE_boolean("warm_start", False, "Initialise from the latest earlier version.")
    flags.DEFINE_string("from_stage", None, "Recompute this stage and every later one.")
    flags.DEFINE_enum("preset", "demo", ["demo", "demo_faithful", "tiny", "paper"], "Hyper-parameter preset.")
    flags.DEFINE_float("cut_quantile", None, "Split at this interaction-time quantile (default: the dataset's).")
    flags.DEFINE_string("history_days", "auto", "History window in days before the cut; 'none' = no window.")
    flags.DEFINE_string("test_days", "auto", "Test window in days after the cut; 'none' = to the end.")
    flags.DEFINE_list("targets", ["audiobook", "podcast"], "Target item types to train and evaluate.")
    flags.DEFINE_integer("k", 10, "Cut-off of HR/Recall/NDCG.")
    flags.DEFINE_boolean("exclude_seen", True, "Exclude items consumed before the split from rankings.")
    flags.DEFINE_string("text_model", None, "sentence-transformers model name or path (default: bundled MiniLM).")
    flags.DEFINE_integer("seed", 0, "Training seed.")
    flags.DEFINE_integer("min_segment_users", 1, "Minimum warm and cold test users.")
    flags.DEFINE_float("valid_frac", 0.1, "Fraction of the training part held out by the validation split "
                       "(temporal: its last part in time).")
    flags.DEFINE_boolean("hgnn_users", False, "Also train/evaluate the HGNN-w-users baseline (users as graph nodes).")
    flags.DEFINE_enum("sampler", "auto", ["auto", "numpy", "device"],
                      "HGNN batch sampling backend: host NumPy or jitted on the device (auto: device on GPU/TPU).")


def _days(value: str, flag: str):
    v = value.strip().lower()
    if v == "auto":
        return AUTO
    if v == "none":
        return None
    try:
        return float(v)
    except ValueError:
        raise flags.ValidationError(f"--{flag}: {value!r} is not a number of days, 'auto' or 'none'") from None


def pipeline_kwargs() -> dict:
    """PipelineConfig keyword arguments from the parsed flags."""
    return dict(
        dataset=FLAGS.dataset, scale=FLAGS.scale, data_seed=FLAGS.data_seed, interactions=FLAGS.interactions,
        items=FLAGS.items, users=FLAGS.users, out_dir=FLAGS.out_dir, as_of=FLAGS.as_of,
        warm_start=FLAGS.warm_start, from_stage=FLAGS.from_stage, preset=FLAGS.preset,
        cut_quantile=FLAGS.cut_quantile, history_days=_days(FLAGS.history_days, "history_days"),
        test_days=_days(FLAGS.test_days, "test_days"), targets=tuple(FLAGS.targets), k=FLAGS.k,
        exclude_seen=FLAGS.exclude_seen, text_model=FLAGS.text_model, seed=FLAGS.seed,
        min_segment_users=FLAGS.min_segment_users, valid_frac=FLAGS.valid_frac, sampler=FLAGS.sampler,
        with_hgnn_users=FLAGS.hgnn_users,
    )


def quiet_library_logs() -> None:
    """orbax/jax log every checkpoint step at INFO through absl: keep the console to our progress lines."""
    from absl import logging

    logging.set_verbosity(logging.WARNING)
