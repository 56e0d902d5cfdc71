"""The HTTP service on 127.0.0.1: a load test with malformed requests and a version switch in the middle
(zero 5xx, every malformed request a 4xx), and the limits (503 above the concurrency limit, 504 past the
timeout, 413 for a large body, in-flight requests drained on shutdown)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytest.importorskip("fastapi")
import uvicorn  # noqa: E402

from twotower_hgnn.serving_http import ServeConfig, ServiceState, create_app  # noqa: E402


@contextlib.contextmanager
def _serve(state: ServiceState):
    """The app on a free 127.0.0.1 port in a thread: yields (base url, uvicorn server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="error", timeout_graceful_shutdown=10))
    server.install_signal_handlers = lambda: None  # not the main thread
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _requests(uids, ab, n):
    """n requests (method, path, body or None, malformed?) with every fourth one malformed, in 8 kinds."""
    bad = [
        ("GET", "/recommend?user_id=u0&k=abc", None),
        ("GET", "/recommend?user_id=nobody", None),
        ("GET", "/recommend?user_id=u0&k=0", None),
        ("GET", "/recommend?user_id=u0&as_of=-10", None),
        ("POST", "/recommend", b'{"age": 30,'),
        ("POST", "/recommend", json.dumps({"age": "old"}).encode()),
        ("POST", "/recommend", json.dumps({"interactions": [[ab, "stream", 1e30]]}).encode()),
        ("POST", "/recommend", json.dumps({"k": 5, "color": "red"}).encode()),
    ]
    out = []
    for i in range(n):
        if i % 4 == 3:
            out.append((*bad[(i // 4) % len(bad)], True))
        elif i % 2:
            out.append(("GET", f"/recommend?user_id={uids[i % len(uids)]}&k={1 + i % 50}", None, False))
        else:
            body = {"age": 20 + i % 40, "country": "SE", "interactions": [[ab, "preview", 1694000000]], "k": 10}
            out.append(("POST", "/recommend", json.dumps(body).encode(), False))
    return out


def test_load_with_a_version_switch(tiny_run, tmp_path):
    cfg, _ = tiny_run
    export = cfg.version_dir() / "export"
    v2 = tmp_path / "v2"
    shutil.copytree(export, v2)
    state = ServiceState(export, ServeConfig(max_concurrency=16, timeout_s=20))
    rec = state.current[0]
    reqs = _requests(list(rec.dataset.users.user_id.iloc[:50]), rec.dataset.items.item_id.iloc[rec.start], 2000)
    with _serve(state) as (url, _):

        def client(part):
            got = []
            with httpx.Client(base_url=url, timeout=30) as c:
                for j, (method, path, body, malformed) in enumerate(part):
                    if j == len(part) // 2 and part is parts[0]:
                        got.append((c.post("/admin/reload", json={"path": str(v2)}).status_code, False))
                    got.append((c.request(method, path, content=body).status_code, malformed))
            return got

        parts = [reqs[i::8] for i in range(8)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            results = [r for part in pool.map(client, parts) for r in part]
        seconds = time.perf_counter() - t0
        health = httpx.get(f"{url}/healthz").json()
        metrics = httpx.get(f"{url}/metrics").text
    assert len(results) == 2001
    assert not [s for s, _ in results if s >= 500], "5xx answers"
    assert all(400 <= s < 500 for s, m in results if m) and all(s == 200 for s, m in results if not m)
    assert health["source"] == str(v2) and "twotower_reloads_total 1" in metrics
    assert 'route="GET /recommend",status="404"' in metrics
    print(f"2,000 requests from 8 clients in {seconds:.1f} s")


class _Slow:
    """A stand-in recommender whose requests sleep ``k`` tenths of a second."""

    target_type, num_items = "audiobook", 10

    def recommend(self, k=1, **kw):
        return [("a", "A", 1.0)]

    def recommend_request(self, req):
        time.sleep(req.get("k", 1) / 10)
        return self.recommend()


def _wait(cond, seconds=10.0):
    deadline = time.time() + seconds
    while not cond():
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_limits_and_drain(tmp_path):
    cfg = ServeConfig(max_concurrency=2, timeout_s=1.5, max_body_bytes=1000)
    state = ServiceState(tmp_path, cfg, lambda p, **kw: _Slow())
    with _serve(state) as (url, server):
        metrics = server.config.app.state.metrics
        with ThreadPoolExecutor(4) as pool:  # 4 requests of 3 s at once: 2 run (and time out), 2 are refused
            codes = sorted(
                pool.map(lambda _: httpx.post(f"{url}/recommend", json={"k": 30}, timeout=10).status_code, range(4))
            )
        assert codes == [503, 503, 504, 504]
        _wait(lambda: metrics.in_flight == 0)  # the timed-out computations end and free their slots
        assert httpx.post(f"{url}/recommend", json={"k": 1}).status_code == 200
        big = httpx.post(f"{url}/recommend", content=b'{"k": 1, "x": "' + b"y" * 5000 + b'"}')
        assert big.status_code == 413 and "over 1000 bytes" in big.json()["error"]
        with ThreadPoolExecutor(1) as pool:  # shutdown while a request is in flight: it still completes
            fut = pool.submit(lambda: httpx.post(f"{url}/recommend", json={"k": 5}, timeout=10).status_code)
            _wait(lambda: metrics.in_flight == 1)
            server.should_exit = True
            assert fut.result() == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=2)


def test_serve_script_answers_and_stops_cleanly_on_sigterm(tiny_run):
    """launch/serve.py as deployed: binds 127.0.0.1 (a free port here), answers, drains and exits 0 on SIGTERM."""
    import re
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    cfg, _ = tiny_run
    cmd = [sys.executable, str(ROOT / "launch" / "serve.py"), f"--run={cfg.version_dir()}", "--port=0"]
    proc = subprocess.Popen(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", first)
        assert url, first
        r = httpx.get(f"{url.group(1)}/recommend", params={"user_id": "nobody"}, timeout=30)
        assert r.status_code == 404 and r.json()["error"].startswith("unknown user_id 'nobody'")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "stopped (SIGTERM)" in out, out[-2000:]
