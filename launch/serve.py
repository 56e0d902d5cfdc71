"""The HTTP recommendation service over a version's export (``twotower_hgnn.serving_http``).

  python -m launch.serve --run=runs/movielens1m/default                 # http://127.0.0.1:8000
  curl 'http://127.0.0.1:8000/recommend?user_id=1m_1&k=10'
  curl -X POST http://127.0.0.1:8000/recommend -d '{"age": 30, "country": "SE", "k": 5}'
  curl -X POST http://127.0.0.1:8000/admin/reload -d '{"path": "runs/movielens1m/2026-03-02/export"}'
  curl http://127.0.0.1:8000/healthz ; curl http://127.0.0.1:8000/metrics

Binds 127.0.0.1 unless ``--host`` says otherwise (the admin route has no authentication: keep it off public
interfaces). SIGTERM / Ctrl-C stop accepting connections and drain the requests in flight (up to
``--drain_s``); SIGHUP reloads the current source (e.g. after repointing a symlink). ``--port=0`` picks a
free port; the first line printed names the address. ``--check`` loads the export, answers one request
in-process and exits 0 without binding (a smoke test for scripts).
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import sys
import threading

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags

flags.DEFINE_string("run", None, "A pipeline version folder (<out_dir>/<dataset>/<version>); serves its export/.")
flags.DEFINE_string("export", None, "An export folder (<version>/export) or a model directory.")
flags.DEFINE_string("target_type", None, "Item type to serve (default: audiobook if served, else the first).")
flags.DEFINE_string("host", "127.0.0.1", "Interface to bind (127.0.0.1: this machine only).")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _check_host(v: str) -> bool:
    """An IP address or a syntactically valid host name (resolved when binding)."""
    try:
        ipaddress.ip_address(v)
        return True
    except ValueError:
        if _HOSTNAME.fullmatch(v):
            return True
    raise flags.ValidationError("not an IP address or host name")


flags.register_validator("host", _check_host)
flags.DEFINE_integer("port", 8000, "TCP port (0: any free port).", lower_bound=0, upper_bound=65535)
flags.DEFINE_integer("max_concurrency", 16, "Requests computed at once; more get 503.", lower_bound=1)
flags.DEFINE_float("timeout_s", 10.0, "Per-request time limit (504 after).", lower_bound=0.001)
flags.DEFINE_integer("max_body_bytes", 1 << 20, "Largest POST body (413 above).", lower_bound=64)
flags.DEFINE_integer("drain_s", 30, "On SIGTERM, how long requests in flight may finish.", lower_bound=0)
flags.DEFINE_boolean("check", False, "Load the export, answer one request in-process, print the address and exit 0.")
flags.DEFINE_enum("log_level", "warning", ["debug", "info", "warning", "error"], "uvicorn log level.")
FLAGS = flags.FLAGS


def _die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        _die(f"--host={host} --port={port}: cannot bind ({e.strerror})")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv) -> None:
    del argv
    from launch.common import quiet_library_logs

    quiet_library_logs()
    import uvicorn

    from twotower_hgnn.serving_http import ServeConfig, ServiceState, create_app
    from twotower_hgnn.serving_requests import ServingError

    given = [n for n in ("run", "export") if FLAGS[n].value is not None]
    if len(given) != 1:
        _die("give exactly one of --run=VERSION_DIR or --export=EXPORT_DIR")
    cfg = ServeConfig(FLAGS.max_concurrency, FLAGS.timeout_s, FLAGS.max_body_bytes, FLAGS.target_type)
    try:
        state = ServiceState(FLAGS[given[0]].value, cfg)
    except ServingError as e:
        _die(str(e))
    if FLAGS.check:  # the export loaded and answered a request (ServiceState does that): nothing to bind
        info = state.current[1]
        print(f"ok: would serve {info['target_type']}s of {info['version']} on http://{FLAGS.host}:{FLAGS.port}")
        return
    sock = _bind(FLAGS.host, FLAGS.port)
    host, port = sock.getsockname()[:2]
    info = state.current[1]
    print(f"serving {info['target_type']}s of {info['version']} ({info['source']}) on http://{host}:{port}", flush=True)

    def on_hup(signum, frame) -> None:  # reload off the signal handler's thread
        threading.Thread(target=_reload_quietly, args=(state,), daemon=True).start()

    signal.signal(signal.SIGHUP, on_hup)
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the handler it found: make that a clean exit
    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)
    config = uvicorn.Config(
        create_app(state),
        log_level=FLAGS.log_level,
        timeout_graceful_shutdown=FLAGS.drain_s,
        h11_max_incomplete_event_size=64 * 1024,  # request line + headers
    )
    uvicorn.Server(config).run(sockets=[sock])


def _stopped(signum, frame) -> None:
    print(f"stopped ({signal.Signals(signum).name}): requests in flight were drained", flush=True)
    raise SystemExit(0)


def _reload_quietly(state) -> None:
    try:
        info = state.reload()
        print(f"reloaded {info['version']} ({info['source']})", flush=True)
    except Exception as e:  # a failed reload keeps the old model serving; the reason is printed
        print(f"reload failed, still serving the previous model: {e}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    from launch.common import run_main

    run_main(main)
