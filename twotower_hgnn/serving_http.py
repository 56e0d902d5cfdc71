"""The HTTP service (FastAPI): recommendations from a version's export, hot-swappable without dropping requests.

Endpoints:

* ``GET /recommend?user_id=…&k=…[&as_of=…&exclude_consumed=true|false]`` — a known user;
* ``POST /recommend`` with a JSON object of ``Recommender.recommend`` fields (``age``, ``country``,
  ``music``, ``interactions``, ``k``, ``as_of``, ``exclude_consumed``, or ``user_id``) — e.g. a brand-new user;
* ``GET /healthz`` — the served version; ``GET /metrics`` — request counts by route and status, latency
  histogram, requests in flight (Prometheus text format);
* ``POST /admin/reload`` with ``{"path": …}`` (optional; default the current source) — loads the new
  export fully (and answers one request with it) before swapping it in with one reference assignment:
  requests in flight finish on the old model, later ones use the new one, none is dropped; a bad path
  leaves the old model serving and answers 400.

Answers: ``{"version", "target_type", "k", "items": [{"rank", "item_id", "title", "score"}]}``. A bad request
is a 4xx with ``{"error": "<one line>"}`` (``ServingError`` -> 400, unknown user -> 404, body too large
-> 413); more than ``max_concurrency`` requests in flight -> 503 at once; a request running past
``timeout_s`` -> 504 (its computation finishes in the background and still counts as in flight).
Graceful shutdown (SIGTERM drains in-flight requests) is uvicorn's (``launch/serve.py``).
"""

import asyncio
import dataclasses
import datetime as _dt
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from twotower_hgnn.serving import Recommender
from twotower_hgnn.serving_requests import ServingError, UnknownUserError, check_fields

log = logging.getLogger("twotower_hgnn.serving_http")
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GET_FIELDS = ("user_id", "k", "as_of", "exclude_consumed")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """max_concurrency: requests computed at once (503 above); timeout_s: per request (504 after);
    max_body_bytes: POST body limit (413 above); target_type: the served item type (None: the export's
    default)."""

    max_concurrency: int = 16
    timeout_s: float = 10.0
    max_body_bytes: int = 1 << 20
    target_type: str | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.timeout_s <= 0 or self.max_body_bytes < 64:
            raise ServingError(f"serve config out of range: {self}")


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------------ state
class ServiceState:
    """The served recommender and its version; ``reload`` swaps in a new one atomically."""

    def __init__(self, source: "str | Path", cfg: ServeConfig, loader: Callable[..., Any] = Recommender.load) -> None:
        self.cfg = cfg
        self.loader = loader
        self._reload_lock = threading.Lock()
        self.current: tuple[Any, dict] = self._load(Path(source))

    def _load(self, source: Path) -> tuple[Any, dict]:
        rec = self.loader(source, target_type=self.cfg.target_type)
        rec.recommend(k=1)  # compile and touch everything before the model takes traffic
        man = {}
        for p in (source / "MANIFEST.json", source / "export" / "MANIFEST.json"):
            if p.is_file():
                man = json.loads(p.read_text())
                break
        info = {
            "source": str(source),
            "version": man.get("version", source.name),
            "dataset": man.get("dataset"),
            "target_type": rec.target_type,
            "items": int(rec.num_items),
            "loaded_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return rec, info

    def reload(self, source: str | Path | None = None) -> dict:
        with self._reload_lock:  # one reload at a time; requests never wait for it
            new = self._load(Path(source) if source is not None else Path(self.current[1]["source"]))
            self.current = new  # one reference assignment: the swap is atomic
            log.warning("serving %s (%s)", new[1]["version"], new[1]["source"])
            return new[1]


# ------------------------------------------------------------------------------------------ metrics
class Metrics:
    """Request counts by (route, status), a latency histogram, requests in flight; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, int], int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_sum = 0.0
        self.in_flight = 0
        self.reloads = 0

    def observe(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.counts[(route, status)] = self.counts.get((route, status), 0) + 1
            i = next((j for j, b in enumerate(LATENCY_BUCKETS_S) if seconds <= b), len(LATENCY_BUCKETS_S))
            self.buckets[i] += 1
            self.latency_sum += seconds

    def try_enter(self, limit: int) -> bool:
        with self._lock:
            if self.in_flight >= limit:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def render(self) -> str:
        with self._lock:
            lines = ["# TYPE twotower_requests_total counter"]
            lines += [
                f'twotower_requests_total{{route="{r}",status="{s}"}} {n}' for (r, s), n in sorted(self.counts.items())
            ]
            lines.append("# TYPE twotower_request_seconds histogram")
            acc = 0
            for b, n in zip(LATENCY_BUCKETS_S + (float("inf"),), self.buckets):
                acc += n
                lines.append(f'twotower_request_seconds_bucket{{le="{"+Inf" if b == float("inf") else b}"}} {acc}')
            lines += [f"twotower_request_seconds_sum {self.latency_sum:.6f}", f"twotower_request_seconds_count {acc}"]
            lines += [f"twotower_in_flight {self.in_flight}", f"twotower_reloads_total {self.reloads}"]
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ parsing
def _query_request(params: list[tuple[str, str]]) -> dict:
    """A GET query string as a ``recommend`` request (strings converted, each field at most once)."""
    keys = [k for k, _ in params]
    check_fields(keys, GET_FIELDS)
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ServingError(f"query parameter(s) {dup} given more than once")
    q = dict(params)
    if "user_id" not in q:
        raise ServingError("GET /recommend needs user_id=…; POST raw features for a new user")
    out: dict[str, Any] = {"user_id": q["user_id"]}
    for name in ("k", "as_of"):
        if name in q:
            v = q[name].strip()
            if not (v.isascii() and v.lstrip("-").isdigit()) or len(v) > 20:
                raise ServingError(f"{name} must be an integer, got {q[name][:40]!r}")
            out[name] = int(v)
    if "exclude_consumed" in q:
        v = q["exclude_consumed"].lower()
        if v not in ("true", "false", "1", "0"):
            raise ServingError(f"exclude_consumed must be true or false, got {q['exclude_consumed'][:40]!r}")
        out["exclude_consumed"] = v in ("true", "1")
    return out


async def _json_body(request: Any, limit: int) -> Any:
    """The request's JSON body, read at most ``limit`` bytes far (413 beyond)."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise HTTPError(413, f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPError(413, f"request body over {limit} bytes")
    try:
        return json.loads(bytes(body))
    except (UnicodeDecodeError, ValueError) as e:
        raise ServingError(f"the body is not valid JSON ({str(e)[:80]})") from None


def _answer(info: dict, recs: list[tuple[str, str, float]]) -> dict:
    return {
        "version": info["version"],
        "target_type": info["target_type"],
        "k": len(recs),
        "items": [{"rank": i, "item_id": a, "title": t, "score": s} for i, (a, t, s) in enumerate(recs, 1)],
    }


# ------------------------------------------------------------------------------------------ app
def _status(e: BaseException) -> tuple[int, str]:
    if isinstance(e, HTTPError):
        return e.status, str(e)
    if isinstance(e, UnknownUserError):
        return 404, str(e)
    if isinstance(e, ServingError):
        return 400, str(e)
    log.error("internal error while serving", exc_info=e)
    return 500, f"internal error ({type(e).__name__})"


class _Runner:
    """Runs request computations on a pool of ``max_concurrency`` threads: 503 when all are busy, 504 after
    ``timeout_s`` (the computation finishes in the background, still holding its slot)."""

    def __init__(self, cfg: ServeConfig, metrics: Metrics) -> None:
        self.cfg, self.metrics = cfg, metrics
        self.pool = ThreadPoolExecutor(max_workers=cfg.max_concurrency, thread_name_prefix="recommend")

    async def __call__(self, fn: Callable[[], Any]) -> Any:
        if not self.metrics.try_enter(self.cfg.max_concurrency):
            raise HTTPError(503, f"over {self.cfg.max_concurrency} requests in flight; retry later")

        def run() -> Any:
            try:
                return fn()
            finally:
                self.metrics.leave()

        fut = asyncio.get_running_loop().run_in_executor(self.pool, run)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # a late failure is not "never retrieved"
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.cfg.timeout_s)
        except asyncio.TimeoutError:
            raise HTTPError(504, f"request took over {self.cfg.timeout_s:g} s") from None


def create_app(state: ServiceState) -> Any:
    """The FastAPI application over ``state`` (module docstring)."""
    import contextlib

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse

    cfg, metrics = state.cfg, Metrics()
    runner = _Runner(cfg, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        yield
        runner.pool.shutdown(wait=True)  # after uvicorn has drained the requests in flight

    app = FastAPI(title="twotower_hgnn", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.service, app.state.metrics = state, metrics

    async def respond(route: str, work: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            status, body = 200, await work()
        except Exception as e:  # mapped to one status and one line; internal errors are logged with traceback
            status, message = _status(e)
            body = {"error": " ".join(message.split())}
        metrics.observe(route, status, time.perf_counter() - t0)
        return JSONResponse(body, status_code=status)

    @app.get("/recommend")
    async def get_recommend(request: Request) -> Any:
        async def work() -> dict:
            req = _query_request(list(request.query_params.multi_items()))
            rec, info = state.current
            return _answer(info, await runner(lambda: rec.recommend_request(req)))

        return await respond("GET /recommend", work)

    @app.post("/recommend")
    async def post_recommend(request: Request) -> Any:
        async def work() -> dict:
            req = await _json_body(request, cfg.max_body_bytes)
            rec, info = state.current
            return _answer(info, await runner(lambda: rec.recommend_request(req)))

        return await respond("POST /recommend", work)

    @app.get("/healthz")
    async def healthz() -> Any:
        return await respond("GET /healthz", _async({"status": "ok", **state.current[1]}))

    @app.get("/metrics")
    async def metrics_text() -> Any:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/admin/reload")
    async def reload(request: Request) -> Any:
        async def work() -> dict:
            body = (
                await _json_body(request, cfg.max_body_bytes) if int(request.headers.get("content-length") or 0) else {}
            )
            if not isinstance(body, dict):
                raise ServingError('the reload body must be a JSON object like {"path": "…/export"}')
            check_fields(body, ("path",))
            path = body.get("path")
            if path is not None and not isinstance(path, str):
                raise ServingError(f"path must be a string, got {type(path).__name__}")
            info = await asyncio.get_running_loop().run_in_executor(None, state.reload, path)
            metrics.reloads += 1
            return info

        return await respond("POST /admin/reload", work)

    return app


def _async(value: Any) -> Callable[[], Any]:
    async def work() -> Any:
        return value

    return work
