"""Encodes item texts with a sentence-transformers model, as its own step (training never imports torch).

Either ``--texts`` (a Parquet/CSV file with a ``text`` column, e.g. written by the pipeline) or a dataset
(``--dataset`` ...) gives the texts; the float32 L2-normalised ``[n, d]`` matrix is written atomically
to ``--out_dir``/content.npy (or an ``--out`` .npy path). Cached by (model, text) under ``--cache_dir``: a
re-run does not re-encode.

  python -m launch.encode_text --dataset=synthetic --scale=small --out_dir=/tmp/content
"""

from __future__ import annotations

from absl import flags

from launch import common
from launch.common import (
    load_dataset_from_flags,
    define_dataset_flags,
    define_input,
    define_output,
    define_renamed,
    run_main,
)

define_input("texts", None, "Parquet/CSV file with a 'text' column (alternative to --dataset).")
define_dataset_flags(None)  # alternative to --texts
define_renamed("seed", "data_seed")
flags.DEFINE_string(
    "text_model", None, "sentence-transformers model name or folder (default: the bundled all-MiniLM-L6-v2)."
)
define_renamed("model", "text_model")
define_output("cache_dir", None, "Embedding cache root (default $TWOTOWER_HGNN_CACHE/text).")
flags.DEFINE_integer("batch_size", 64, "Texts per encoder call.", lower_bound=1)
define_output("out_dir", None, "Output folder: writes OUT_DIR/content.npy.")
define_output("out", None, "Output .npy path (default OUT_DIR/content.npy).", is_dir=False)
flags.register_multi_flags_validator(
    ["texts", "dataset"], lambda v: bool(v["texts"]) != bool(v["dataset"]), "give exactly one of --texts or --dataset"
)
flags.register_multi_flags_validator(
    ["out", "out_dir"], lambda v: bool(v["out"] or v["out_dir"]), "give --out_dir (or an --out .npy path)"
)
flags.adopt_module_key_flags(common)  # --help lists the shared flags too
FLAGS = flags.FLAGS


def _read_texts(path: str) -> list[str]:
    """The ``text`` column of a Parquet/CSV file (a DataError naming the file otherwise)."""
    import pandas as pd

    from twotower_hgnn.errors import DataError

    try:
        if path.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(
            f"--texts={path}: cannot be read as {'Parquet' if path.endswith(('.parquet', '.pq')) else 'CSV'}: {e}"
        ) from None
    if "text" not in df.columns:
        raise DataError(f"--texts={path}: no 'text' column (found {list(df.columns)})")
    return df["text"].astype(str).tolist()


def main(argv):
    del argv
    import os

    from twotower_hgnn.io import atomic_save_npy
    from twotower_hgnn.text import encode_texts, item_texts

    if FLAGS.texts:
        texts = _read_texts(FLAGS.texts)
    else:
        texts = item_texts(load_dataset_from_flags())
    emb = encode_texts(
        texts, model=FLAGS.text_model, cache_dir=FLAGS.cache_dir, batch_size=FLAGS.batch_size, progress=True
    )
    out = FLAGS.out or os.path.join(FLAGS.out_dir, "content.npy")
    atomic_save_npy(out, emb)
    print(f"wrote {out}: {emb.shape[0]:,} x {emb.shape[1]} float32")


if __name__ == "__main__":
    run_main(main)
