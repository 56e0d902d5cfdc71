"""Top-K recommendations from a version's self-contained export: one user, a brand-new user, or every user.

  python -m launch.recommend --run=runs/movielens1m/default --user_id=1m_1 --k=10     # a version folder
  python -m launch.recommend --export=runs/movielens1m/default/export --user_id=1m_1  # its export folder
  python -m launch.recommend --run=VERSION --age=30 --country=SE --k=5                # a brand-new user
  python -m launch.recommend --run=VERSION --user_id=u1 --as_of=1694736000            # as of a time
  python -m launch.recommend --run=VERSION --all_users --out=top10.parquet --k=10     # batch, every user

One user: prints rank, score, item id and title. ``--all_users`` writes ``user_id, rank, item_id, score``
as Parquet, streaming chunks of ``--chunk_users`` users. ``--target_type`` picks the served model
(default: audiobook if served). ``--model_dir`` (a model directory) is a deprecated alias of ``--export``.
Bad flags, an unknown user or a missing export exit 2 with one error line.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags

from launch import common

flags.DEFINE_string("run", None, "A pipeline version folder (<out_dir>/<dataset>/<version>); serves its export/.")
flags.DEFINE_string("export", None, "An export folder (<version>/export) or a model directory.")
flags.DEFINE_string("model_dir", None, "Deprecated: use --export.")
flags.DEFINE_string("target_type", None, "Item type to recommend (default: audiobook if served, else the first).")
flags.DEFINE_string("user_id", None, "A user of the export's user store (omit for a new user: --age/--country).")
flags.DEFINE_integer("age", None, "New user: age in years.", lower_bound=0)
flags.DEFINE_string("country", None, "New user: country code.")
flags.DEFINE_integer("k", 10, "Number of recommendations (capped at the catalogue size).", lower_bound=1)
flags.DEFINE_integer("as_of", None, "Unix seconds the user features are computed at (default: the export snapshot).")
flags.DEFINE_boolean("exclude_consumed", True, "Drop items the user already streamed.")
flags.DEFINE_boolean("all_users", False, "Top-k of every user of the store, written to --out as Parquet.")
common.define_output("out", None, "--all_users: the Parquet file to write.", is_dir=False)
flags.DEFINE_integer("chunk_users", 4096, "--all_users: users per chunk (bounds memory).", lower_bound=1)
flags.adopt_module_key_flags(common)  # --help lists --out (defined through launch.common)
FLAGS = flags.FLAGS


def _die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _source() -> str:
    given = [n for n in ("run", "export", "model_dir") if FLAGS[n].value is not None]
    if len(given) != 1:
        _die("give exactly one of --run=VERSION_DIR or --export=EXPORT_DIR")
    return FLAGS[given[0]].value


def _batch(rec) -> None:
    from twotower_hgnn.serving_batch import batch_recommend

    def progress(done: int, total: int, s: float) -> None:
        eta = s / done * (total - done)
        print(
            f"[recommend] {done}/{total} users ({100 * done / total:.0f}%, {done / max(s, 1e-9):.0f}/s, ETA {eta:.0f}s)"
        )

    out = batch_recommend(
        rec,
        FLAGS.out,
        k=FLAGS.k,
        chunk_users=FLAGS.chunk_users,
        exclude_consumed=FLAGS.exclude_consumed,
        as_of=FLAGS.as_of,
        progress=progress,
    )
    print(f"[recommend] wrote {out['rows']} rows for {out['users']} users (top {out['k']}) to {out['path']}")


def _check_flags() -> tuple[dict, str]:
    """The request's fields from the flags, validated before anything is loaded (no device work for a bad
    flag); -> (recommend keyword arguments, who)."""
    from twotower_hgnn.serving_requests import ServingError, check_id, check_timestamp, parse_demographics

    if FLAGS.as_of is not None:
        check_timestamp(FLAGS.as_of, "--as_of")
    if FLAGS.all_users:
        if FLAGS.out is None:
            raise ServingError("--all_users needs --out=FILE.parquet")
        if FLAGS.user_id is not None or FLAGS.age is not None or FLAGS.country is not None:
            raise ServingError("--all_users cannot be combined with --user_id/--age/--country")
        return {}, "every user"
    if FLAGS.user_id is not None:
        if FLAGS.age is not None or FLAGS.country is not None:
            raise ServingError("--user_id cannot be combined with --age/--country")
        return {"user_id": check_id(FLAGS.user_id, "--user_id")}, f"user {FLAGS.user_id}"
    parse_demographics(FLAGS.age, FLAGS.country, None, 0)
    return {"age": FLAGS.age, "country": FLAGS.country}, "a new user"


def main(argv) -> None:
    del argv
    from launch.common import quiet_library_logs

    quiet_library_logs()
    from twotower_hgnn.serving_requests import ServingError

    source = _source()
    try:
        kw, who = _check_flags()
        from twotower_hgnn.serving import Recommender

        rec = Recommender.load(source, target_type=FLAGS.target_type)
        if FLAGS.model_dir is not None:  # after loading: a bad value prints the error line alone
            print("warning: --model_dir is deprecated; use --export", file=sys.stderr)
        if FLAGS.all_users:
            return _batch(rec)
        out = rec.recommend(**kw, k=FLAGS.k, exclude_consumed=FLAGS.exclude_consumed, as_of=FLAGS.as_of)
    except ServingError as e:
        _die(str(e))
    if FLAGS.k > rec.num_items:
        print(f"note: --k={FLAGS.k} capped at the {rec.num_items} {rec.target_type}s of the catalogue", file=sys.stderr)
    print(f"Top {len(out)} {rec.target_type}s for {who}:")
    for rank, (item_id, title, score) in enumerate(out, 1):
        print(f"{rank:3d}  {score:8.4f}  {item_id}  {title}")


if __name__ == "__main__":
    from launch.common import run_main

    run_main(main)
