"""absl flags shared by the entry points: the run configuration (``--config``, ``--config.<path>=``)
and the pipeline's inputs, outputs and run identity.

Every hyper-parameter and budget is a field of :class:`twotower_hgnn.configs.RunConfig`:
``--config=demo`` picks a preset (``paper``, ``demo``, ``demo_faithful``, ``test``) or a ``.py`` file
with ``get_config()``, and ``--config.<path>=value`` overrides any field, e.g.
``--config.hgnn.fanouts=10,5 --config.two_tower.max_steps=100 --config.eval.k=20``. ``--print_config``
prints the resolved configuration and exits. The previous round's hyper-parameter flags (``--preset``,
``--k``, ``--targets`` ...) still work for this round and print one deprecation line each.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from absl import app, flags

FLAGS = flags.FLAGS
_OVERRIDES: list[tuple[str, str]] = []  # (dotted path, value) from --config.<path>=value, in order

# old flag -> config path (None: the flag chose the preset)
DEPRECATED: dict[str, str | None] = {
    "preset": None,
    "k": "eval.k",
    "targets": "eval.targets",
    "exclude_seen": "eval.exclude_seen",
    "hgnn_users": "eval.with_hgnn_users",
    "text_model": "text.model",
    "cut_quantile": "split.cut_quantile",
    "history_days": "split.history_days",
    "test_days": "split.test_days",
    "min_segment_users": "split.min_segment_users",
    "valid_frac": "split.valid_frac",
    "sampler": "sampler",
}


_ALIASES: dict[str, str | None] = {}  # the deprecated aliases this program defined


def define_config_flags(
    default: str = "demo", deprecated: tuple[str, ...] = tuple(DEPRECATED), aliases: dict[str, str | None] | None = None
) -> None:
    """``--config``, ``--print_config`` and deprecated aliases: the names in ``deprecated`` (of
    :data:`DEPRECATED`) and ``aliases`` (``{old flag: config path, or None for the preset}``)."""
    _ALIASES.update({n: DEPRECATED[n] for n in deprecated})
    _ALIASES.update(aliases or {})
    flags.DEFINE_string(
        "config",
        default,
        "Run configuration: a preset (paper, demo, demo_faithful, test) or a .py "
        "file with get_config(). Override any field with --config.<path>=value, e.g. "
        "--config.hgnn.fanouts=10,5 --config.two_tower.max_steps=100 (fields: --print_config).",
    )
    flags.DEFINE_boolean("print_config", False, "Print the resolved configuration (JSON) and exit.")
    for name, path in _ALIASES.items():
        flags.DEFINE_string(
            name,
            None,
            f"Deprecated: use --config{'=' if path is None else '.'}{'<preset>' if path is None else path + '=VALUE'}",
        )


def define_pipeline_flags() -> None:
    """Inputs, outputs and run identity of a pipeline run (plus the configuration flags)."""
    define_config_flags()
    flags.DEFINE_enum("dataset", "movielens1m", ["movielens1m", "synthetic", "files"], "Data source.")
    flags.DEFINE_enum("scale", "tiny", ["tiny", "small", "medium", "large", "xlarge", "paper"], "Synthetic scale.")
    flags.DEFINE_integer("data_seed", 0, "Synthetic generator seed.")
    flags.DEFINE_string("interactions", None, "--dataset=files: interactions CSV/Parquet.")
    flags.DEFINE_string("items", None, "--dataset=files: items CSV/Parquet.")
    flags.DEFINE_string("users", None, "--dataset=files: users CSV/Parquet.")
    flags.DEFINE_string("out_dir", "runs", "Root of all pipeline versions.")
    flags.DEFINE_string("as_of", None, "Run as of this ISO date (the split cut; names the version).")
    flags.DEFINE_boolean("warm_start", False, "Initialise from the latest earlier version.")
    flags.DEFINE_enum(
        "from_stage",
        None,
        ["data", "split", "valid", "graph", "content", "hgnn", "hgnn_users", "two_tower", "evaluate", "export"],
        "Recompute this stage and every later one.",
    )
    flags.DEFINE_integer("seed", 0, "Training seed.")


def parse_flags_with_config(argv: list[str]) -> list[str]:
    """absl flags parser (``app.run(main, flags_parser=...)``): takes every ``--config.<path>=value`` (or
    ``--config.<path> value``) out of ``argv`` before absl parses the rest."""
    rest = [argv[0]]
    args = iter(argv[1:])
    for a in args:
        if a == "--":
            rest.append(a)
            rest.extend(args)
            break
        if a.startswith("--config."):
            key, eq, value = a[len("--config.") :].partition("=")
            if not eq:
                value = next(args, None)
                if value is None:
                    raise SystemExit(f"error: --config.{key} needs a value (--config.{key}=VALUE)")
            _OVERRIDES.append((key, value))
        else:
            rest.append(a)
    return app.parse_flags_with_usage(rest)


def run_config():
    """The resolved :class:`RunConfig` of the parsed flags (exits 2 with one line on a bad value)."""
    from twotower_hgnn import configs

    spec = FLAGS.config
    over: dict[str, Any] = {}
    for name, path in _ALIASES.items():
        if FLAGS[name].present:
            value = FLAGS[name].value
            print(
                f"warning: --{name} is deprecated; use --config{'=' + value if path is None else '.' + path + '=' + value}",
                file=sys.stderr,
            )
            if path is None:
                spec = value
            else:
                over[path] = value
    over.update(dict(_OVERRIDES))
    try:
        cfg = configs.load(spec, over)
    except configs.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if FLAGS.print_config:
        import json

        print(json.dumps(cfg.to_dict(), indent=1))
        raise SystemExit(0)
    return cfg


def pipeline_kwargs() -> dict:
    """PipelineConfig keyword arguments from the parsed flags."""
    return dict(
        dataset=FLAGS.dataset,
        scale=FLAGS.scale,
        data_seed=FLAGS.data_seed,
        interactions=FLAGS.interactions,
        items=FLAGS.items,
        users=FLAGS.users,
        out_dir=FLAGS.out_dir,
        as_of=FLAGS.as_of,
        warm_start=FLAGS.warm_start,
        from_stage=FLAGS.from_stage,
        seed=FLAGS.seed,
        config=run_config(),
    )


def run_main(main: Callable[[list[str]], Any]) -> None:
    """``app.run`` with the ``--config.<path>`` parser."""
    app.run(main, flags_parser=parse_flags_with_config)


def quiet_library_logs() -> None:
    """orbax/jax log every checkpoint step at INFO through absl: keep the console to our progress lines."""
    from absl import logging

    logging.set_verbosity(logging.WARNING)
