"""The web UI's HTTP server: one static page plus a small read-only JSON API.

Every request opens the experiment database with ``mode=ro`` and closes it before
answering, so a viewer holds no lock between requests, can never write, and cannot make
a running experiment fail with "database is locked" (in WAL mode readers never block the
writer). Routes:

- ``GET /``, ``/experiments``, ``/experiments/<id>``: the page (``static/index.html``)
- ``GET /api/experiments``: every experiment's summary
- ``GET /api/experiments/<id>``: summary plus the stored config
- ``GET /api/experiments/<id>/trials``: every trial with its intermediate results
- ``GET /api/experiments/<id>/trials/<trial>/log?stream=stdout|stderr[&bytes=N]``: log tail
- ``GET /api/experiments/<id>/importance``, ``POST /api/experiments/<id>/kill|update``: see
  :mod:`torchslim.experiment.webui.control_api` (control needs the experiment's token)
"""
from __future__ import annotations

import errno
import math
import re
import sqlite3
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

from torchslim.errors import ConfigError
from torchslim.experiment import store as st
from torchslim.experiment.webui import control_api
from torchslim.utils.jsonsafe import dumps, finite

STATIC_DIR = Path(__file__).resolve().parent / "static"
LOG_TAIL_BYTES = 64 * 1024  # default log tail; ?bytes= may ask for up to LOG_TAIL_MAX
LOG_TAIL_MAX = 1024 * 1024
LOG_STREAMS = ("stdout", "stderr")
# experiment and trial ids are generated ([a-z0-9] / trial_NNNN); anything else (dots,
# slashes, encoded separators) is refused before it gets near the file system
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# the page is self-contained: the browser may load nothing from anywhere else
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'")


class HttpError(Exception):
    """An error answered as ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---- data (pure functions of a read-only store) ---------------------------------------

def optimize_mode(config: dict[str, Any]) -> str:
    return (config.get("tuner_args") or {}).get("optimize_mode", "maximize")


def experiment_summary(store: st.ExperimentStore, with_config: bool = False) -> dict[str, Any]:
    """Status, progress and best trial of the experiment in ``store``."""
    info = store.experiment()
    cfg = info["config"]
    records = store.trials(with_intermediate=False)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    mode = optimize_mode(cfg)
    done = [r for r in records if r.status == st.SUCCEEDED and r.value is not None
            and math.isfinite(r.value)]
    best = (max if mode == "maximize" else min)(done, key=lambda r: r.value) if done else None
    status = st.effective_status(info, store.folder)
    elapsed = float(info.get("elapsed") or 0.0)
    since = info.get("heartbeat") or info.get("started")
    if status == "RUNNING" and since:
        elapsed += max(0.0, time.time() - since)  # stored at each checkpoint of the run
    summary = {
        "id": info["id"], "name": info["name"], "status": status, "message": info["message"],
        "created": info["created"], "started": info["started"], "ended": info["ended"],
        "elapsed": elapsed, "tuner": cfg.get("tuner"), "optimizeMode": mode,
        "maxTrialNumber": cfg.get("max_trial_number"),
        "maxExperimentDuration": cfg.get("max_experiment_duration"),
        "trialConcurrency": cfg.get("trial_concurrency"),
        "total": len(records), "counts": counts,
        "finished": sum(counts.get(s, 0) for s in st.FINISHED_STATUSES),
        "best": None if best is None else {
            "trialJobId": best.trial_id, "sequence": best.sequence, "value": best.value,
            "parameter": best.parameters},
        "folder": str(store.folder),
    }
    if with_config:
        summary["config"] = cfg
    return finite(summary)


def trial_list(store: st.ExperimentStore) -> list[dict[str, Any]]:
    """Every trial as ``status --json`` shows it, plus the numeric final value."""
    out = []
    for r in store.trials():
        record = r.to_dict()
        record.update(finalValue=r.value, queued=r.queued, attempts=r.attempts)
        out.append(record)
    return finite(out)


def log_tail(store: st.ExperimentStore, trial_id: str, stream: str,
             max_bytes: int = LOG_TAIL_BYTES) -> dict[str, Any]:
    """The last ``max_bytes`` of a trial's stdout or stderr.

    Only files inside the experiment's folder are read, whatever path the database holds.
    """
    if stream not in LOG_STREAMS:
        raise HttpError(HTTPStatus.BAD_REQUEST,
                        f"stream is {stream!r}; allowed: {', '.join(LOG_STREAMS)}")
    record = next((r for r in store.trials(with_intermediate=False) if r.trial_id == trial_id),
                  None)
    if record is None:
        raise HttpError(HTTPStatus.NOT_FOUND, f"no trial {trial_id!r}")
    stored = record.stdout_path if stream == "stdout" else record.stderr_path
    folder = store.folder.resolve()
    path = Path(stored) if stored else folder / "trials" / trial_id / stream
    path = path.resolve()
    if not path.is_relative_to(folder):
        raise HttpError(HTTPStatus.FORBIDDEN, f"the {stream} log of {trial_id} lies outside "
                                              f"the experiment folder; not served")
    result: dict[str, Any] = {"trialJobId": trial_id, "stream": stream, "exists": False,
                              "size": 0, "truncated": False, "text": ""}
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return result
    except IsADirectoryError:
        raise HttpError(HTTPStatus.FORBIDDEN, f"the {stream} log of {trial_id} is not a file")
    if start and b"\n" in data:
        data = data.split(b"\n", 1)[1]  # start at a whole line
    result.update(exists=True, size=size, truncated=start > 0,
                  text=data.decode("utf-8", errors="replace"))
    return result


# ---- server ---------------------------------------------------------------------------

class ViewerServer(ThreadingHTTPServer):
    """Serves the experiments under ``experiments_dir`` read-only.

    ``default_id``: the experiment ``/`` redirects to (``view ID``); None shows the list.
    """

    daemon_threads = True  # a browser's keep-alive connection must not block shutdown

    def __init__(self, address: tuple[str, int], experiments_dir: str | Path | None = None,
                 default_id: str | None = None, quiet: bool = True) -> None:
        self.root = st.default_experiments_dir(experiments_dir)
        self.default_id = default_id
        self.quiet = quiet
        self.page = _page()
        self.tokens = control_api.Tokens()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def open_store(self, exp_id: str) -> st.ExperimentStore:
        """The read-only store of ``exp_id`` (404 if there is none)."""
        path = self.root / exp_id / st.DB_NAME
        if not _ID_RE.fullmatch(exp_id) or not path.is_file():
            raise HttpError(HTTPStatus.NOT_FOUND, f"no experiment with id {exp_id!r}")
        return st.ExperimentStore(path, readonly=True)

    def with_store(self, exp_id: str, fn: Callable[[st.ExperimentStore], Any]) -> Any:
        store = self.open_store(exp_id)
        try:
            return fn(store)
        finally:
            store.close()

    def list_experiments(self) -> list[dict[str, Any]]:
        found = []
        for db in self.root.glob(f"*/{st.DB_NAME}"):
            try:
                found.append(self.with_store(db.parent.name, experiment_summary))
            except (sqlite3.Error, ConfigError, HttpError):
                continue  # half-created or foreign folder: not ours to show
        found.sort(key=lambda s: s.get("created") or 0)
        return found


def _api_routes(server: ViewerServer) -> list[tuple[re.Pattern[str], Callable[..., Any]]]:
    def log(exp_id: str, trial_id: str, query: dict[str, list[str]]) -> Any:
        if not _ID_RE.fullmatch(trial_id):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"invalid trial id {trial_id!r}")
        stream = query.get("stream", ["stdout"])[0]
        try:
            size = min(LOG_TAIL_MAX, max(1, int(query.get("bytes", [LOG_TAIL_BYTES])[0])))
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bytes must be an integer") from None
        return server.with_store(exp_id, lambda s: log_tail(s, trial_id, stream, size))

    seg = r"([^/]+)"
    return [
        (re.compile(r"/api/experiments/?"), lambda q: server.list_experiments()),
        (re.compile(rf"/api/experiments/{seg}/?"),
         lambda e, q: server.with_store(e, lambda s: experiment_summary(s, with_config=True))),
        (re.compile(rf"/api/experiments/{seg}/trials/?"),
         lambda e, q: server.with_store(e, trial_list)),
        (re.compile(rf"/api/experiments/{seg}/trials/{seg}/log/?"), log),
        (re.compile(rf"/api/experiments/{seg}/importance/?"),
         lambda e, q: server.with_store(e, control_api.importance)),
    ]


def _page() -> bytes:
    """index.html with the analysis/control views (analysis.js) inlined: one
    self-contained page, nothing loaded from anywhere."""
    html = (STATIC_DIR / "index.html").read_text()
    extra = (STATIC_DIR / "analysis.js").read_text()
    return html.replace("</body>", f"<script>\n{extra}\n</script>\n</body>", 1).encode()


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "torchslim-viewer"
    protocol_version = "HTTP/1.1"  # keep-alive: the page polls every 2 s

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        path = url.path
        try:
            if path.startswith("/api/"):
                self._send_json(HTTPStatus.OK, self._api(path, parse_qs(url.query)))
            elif path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")  # none, and no 404 noise
            elif path in ("/", "") and self.server.default_id:
                self._send(HTTPStatus.FOUND, b"", "text/plain",
                           {"Location": f"/experiments/{self.server.default_id}"})
            elif path in ("/", "", "/experiments", "/experiments/") or re.fullmatch(
                    r"/(experiments/[^/]+|compare/[^/]+/[^/]+)/?", path):
                self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8",
                           {"Content-Security-Policy": _CSP})
            else:
                raise HttpError(HTTPStatus.NOT_FOUND, f"no page {path!r}")
        except HttpError as exc:
            self._send_json(exc.status, {"error": str(exc)})
        except (sqlite3.Error, ConfigError) as exc:
            # e.g. a database caught mid-creation: the page retries on its next poll
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"cannot read: {exc}"})

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        try:
            match = re.fullmatch(r"/api/experiments/([^/]+)/(kill|update)/?", path)
            if not match:
                raise HttpError(HTTPStatus.NOT_FOUND, f"no API route {path!r}")
            exp_id, action = unquote(match.group(1)), match.group(2)
            self.server.open_store(exp_id).close()  # 404 for unknown ids
            body = control_api.read_body(self)
            if not self.server.tokens.check(exp_id, self.headers.get(control_api.TOKEN_HEADER)):
                raise HttpError(HTTPStatus.FORBIDDEN, "read-only: this action needs the "
                                "experiment's control token (printed when the UI started)")
            self._send_json(HTTPStatus.OK, control_api.control(self.server.root / exp_id,
                                                               action, body))
        except HttpError as exc:
            self._send_json(exc.status, {"error": str(exc)})
        except ConfigError as exc:
            self._send_json(HTTPStatus.CONFLICT, {"error": str(exc)})
        except sqlite3.Error as exc:
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"cannot write: {exc}"})

    def _api(self, path: str, query: dict[str, list[str]]) -> Any:
        for pattern, handler in _api_routes(self.server):
            match = pattern.fullmatch(path)
            if match:
                # decode after splitting: an encoded '/' stays inside its segment
                return handler(*(unquote(g) for g in match.groups()), query)
        raise HttpError(HTTPStatus.NOT_FOUND, f"no API route {path!r}")

    def _send_json(self, status: HTTPStatus, payload: Any) -> None:
        self._send(status, dumps(payload).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        if not self.server.quiet:
            super().log_message(format, *args)


def make_server(host: str = "127.0.0.1", port: int = 8080,
                experiments_dir: str | Path | None = None,
                default_id: str | None = None, quiet: bool = True) -> ViewerServer:
    """A viewer bound to ``host:port`` (port 0: any free port); call ``serve_forever()``."""
    if default_id is not None:
        st.experiment_path(default_id, experiments_dir)  # unknown id: ConfigError naming known ids
    try:
        return ViewerServer((host, port), experiments_dir, default_id, quiet)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use; pick another with --port "
                              f"(--port 0 picks a free one)") from None
        raise


def serve(experiment_id: str | None = None, experiments_dir: str | Path | None = None,
          host: str = "127.0.0.1", port: int = 8080, out: TextIO = sys.stdout) -> None:
    """Serve until Ctrl-C (the ``torchslim experiment view`` command)."""
    server = make_server(host, port, experiments_dir, experiment_id)
    page = f"{server.url}/experiments/{experiment_id}" if experiment_id else f"{server.url}/"
    print(f"torchslim experiment viewer (read-only without the token) at {page}", file=out)
    if experiment_id:
        token = server.tokens.token(experiment_id)
        print(f"  control token for {experiment_id}: {token}", file=out)
        print(f"  open with control (kill, update): {page}?token={token}", file=out)
    else:
        print("  control (kill, update) needs a token: start with `view ID`", file=out)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"  note: bound to {host}: anyone who can reach this port can read the "
              f"experiments in {server.root}", file=out)
    print("  press Ctrl-C to stop", file=out, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
