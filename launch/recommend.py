"""Top-K recommendations for one user from an exported two-tower model (``serving.save_model``).

  python launch/recommend.py --model_dir=WORKDIR/model --user_id=u000123 --k=10
  python launch/recommend.py --model_dir=WORKDIR/model --age=30 --country=SE --k=5     # a brand-new user
  python launch/recommend.py --model_dir=WORKDIR/model --user_id=u1 --as_of=1694736000  # as of a time

Prints rank, score, item id and title. An unknown user or a malformed flag exits with one error line.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags

flags.DEFINE_string(
    "model_dir", None, "Directory written by serving.save_model / launch/train_two_tower.py.", required=True
)
flags.DEFINE_string("user_id", None, "A user of the model's user store (omit for a new user: --age/--country).")
flags.DEFINE_integer("age", None, "New user: age in years.")
flags.DEFINE_string("country", None, "New user: country code.")
flags.DEFINE_integer("k", 10, "Number of recommendations.")
flags.DEFINE_integer("as_of", None, "Unix seconds the user features are computed at (default: the export snapshot).")
flags.DEFINE_boolean("exclude_consumed", True, "Drop items the user already streamed.")
FLAGS = flags.FLAGS


def main(argv) -> None:
    del argv
    from launch.common import quiet_library_logs

    quiet_library_logs()
    from twotower_hgnn.serving import Recommender, ServingError

    try:
        rec = Recommender.from_model_dir(FLAGS.model_dir)
        if FLAGS.user_id is not None:
            if FLAGS.age is not None or FLAGS.country is not None:
                raise ServingError("--user_id cannot be combined with --age/--country")
            out = rec.recommend(
                user_id=FLAGS.user_id, k=FLAGS.k, exclude_consumed=FLAGS.exclude_consumed, as_of=FLAGS.as_of
            )
            who = f"user {FLAGS.user_id}"
        else:
            out = rec.recommend(age=FLAGS.age, country=FLAGS.country, k=FLAGS.k, as_of=FLAGS.as_of)
            who = "a new user"
    except (ServingError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(f"Top {len(out)} {rec.target_type}s for {who}:")
    for rank, (item_id, title, score) in enumerate(out, 1):
        print(f"{rank:3d}  {score:8.4f}  {item_id}  {title}")


if __name__ == "__main__":
    app.run(main)
