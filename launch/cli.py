"""``twotower-hgnn <command> [flags]``: the console script installed by pip, one command per launch script.

  twotower-hgnn pipeline --dataset=synthetic --scale=small
  twotower-hgnn recommend --run=runs/synthetic-small-s0/default --user_id=u000001 --k=10
  twotower-hgnn serve --run=runs/synthetic-small-s0/default
  twotower-hgnn <command> --help       # the command's flags
  twotower-hgnn --version

Each command runs ``launch/<command>.py`` exactly as ``python -m launch.<command>`` would (same flags, same
exit codes), from any working directory.
"""

from __future__ import annotations

import runpy
import sys

COMMANDS = {
    "pipeline": ("launch.pipeline", "the daily pipeline: data to export, every stage resumable"),
    "evaluate": ("launch.evaluate", "train and evaluate on an external train/test split"),
    "recommend": ("launch.recommend", "top-K from a version's export: one user, a new user, or every user"),
    "serve": ("launch.serve", "the HTTP recommendation service over a version's export"),
    "ablations": ("launch.ablations", "Table 1: the full model and ablations A-F"),
    "prepare-data": ("launch.prepare_data", "load, split, build the graph, print statistics"),
    "encode-text": ("launch.encode_text", "Sentence-BERT item features as their own step"),
    "train-hgnn": ("launch.train_hgnn", "train the heterogeneous GraphSAGE alone"),
    "train-two-tower": ("launch.train_two_tower", "train one two-tower model alone"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: twotower-hgnn <command> [flags]   (twotower-hgnn <command> --help lists its flags)\n\ncommands:\n{rows}"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        raise SystemExit(0 if argv else 2)
    if argv[0] == "--version":
        from twotower_hgnn import __version__

        print(f"twotower-hgnn {__version__}")
        raise SystemExit(0)
    name = argv[0].replace("_", "-")
    if name not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = COMMANDS[name][0]
    sys.argv = [f"twotower-hgnn {name}", *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
