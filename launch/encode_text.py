"""Encodes item texts with a sentence-transformers model, as its own step (training never imports torch).

Either ``--texts`` (a Parquet/CSV file with a ``text`` column, e.g. written by the pipeline) or a dataset
(``--dataset`` ...) gives the texts; the float32 L2-normalised ``[n, d]`` matrix is written atomically
to ``--out`` (.npy). Cached by (model, text) under ``--cache_dir``: a re-run does not re-encode.

  python -m launch.encode_text --dataset=synthetic --scale=small --out=/tmp/content.npy
"""

from __future__ import annotations

from absl import app, flags

flags.DEFINE_string("texts", None, "Parquet/CSV file with a 'text' column (alternative to --dataset).")
flags.DEFINE_string("dataset", None, "movielens1m | synthetic | files (alternative to --texts).")
flags.DEFINE_string("scale", "tiny", "Synthetic scale.")
flags.DEFINE_integer("seed", 0, "Synthetic seed.")
flags.DEFINE_string("interactions", None, "--dataset=files: interactions file.")
flags.DEFINE_string("items", None, "--dataset=files: items file.")
flags.DEFINE_string("users", None, "--dataset=files: users file.")
flags.DEFINE_string(
    "model", None, "sentence-transformers model name or folder (default: the bundled all-MiniLM-L6-v2)."
)
flags.DEFINE_string("cache_dir", None, "Embedding cache root (default $TWOTOWER_HGNN_CACHE/text).")
flags.DEFINE_integer("batch_size", 64, "Texts per encoder call.")
flags.DEFINE_string("out", None, "Output .npy path.", required=True)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import pandas as pd

    from twotower_hgnn.io import atomic_save_npy
    from twotower_hgnn.text import encode_texts, item_texts

    if bool(FLAGS.texts) == bool(FLAGS.dataset):
        raise app.UsageError("give exactly one of --texts or --dataset")
    if FLAGS.texts:
        path = FLAGS.texts
        df = pd.read_parquet(path) if path.endswith((".parquet", ".pq")) else pd.read_csv(path, keep_default_na=False)
        if "text" not in df.columns:
            raise app.UsageError(f"--texts={path}: no 'text' column (found {list(df.columns)})")
        texts = df["text"].astype(str).tolist()
    else:
        from twotower_hgnn.data import load_from_flags

        texts = item_texts(
            load_from_flags(
                FLAGS.dataset,
                scale=FLAGS.scale,
                seed=FLAGS.seed,
                interactions=FLAGS.interactions,
                items=FLAGS.items,
                users=FLAGS.users,
            )
        )
    emb = encode_texts(texts, model=FLAGS.model, cache_dir=FLAGS.cache_dir, batch_size=FLAGS.batch_size, progress=True)
    atomic_save_npy(FLAGS.out, emb)
    print(f"wrote {FLAGS.out}: {emb.shape[0]:,} x {emb.shape[1]} float32")


def _main(argv):
    """Data/encoder errors end the run with their one-line message, not a traceback."""
    import sys

    from twotower_hgnn.data.readers import DataError
    from twotower_hgnn.text import TextError

    try:
        main(argv)
    except (DataError, TextError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(_main)
