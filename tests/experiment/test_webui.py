"""The read-only web UI: JSON API, the self-contained page, 404s, log path safety and a
database opened read-only. A real server on 127.0.0.1 (port 0) in a thread."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import torchslim
from torchslim.errors import ConfigError
from torchslim.experiment import Experiment
from torchslim.experiment import store as st
from torchslim.experiment.webui.server import make_server

pytestmark = pytest.mark.timeout(20)
ROOT = str(Path(__file__).resolve().parents[2])


def _trial(params: dict[str, Any]) -> float:
    for step in range(3):
        torchslim.report_intermediate_result(params["x"] * (step + 1) / 3)
    if params["x"] > 0.75:
        raise RuntimeError("x too big")
    return params["x"]


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    """A finished 3-trial experiment (2 succeed, 1 fails) and a server showing it."""
    root = tmp_path_factory.mktemp("webui") / "experiments"
    exp = Experiment({"x": torchslim.choice(0.25, 0.5, 1.0)}, trial_function=_trial,
                     tuner="GridSearch", max_trial_number=3, experiment_name="web",
                     experiments_dir=root).run()
    server = make_server("127.0.0.1", 0, experiments_dir=root, default_id=exp.id)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield exp, server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def get(server, path: str) -> tuple[int, bytes, Any]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def get_json(server, path: str, status: int = 200) -> Any:
    code, body, headers = get(server, path)
    assert code == status, body
    assert headers["Content-Type"] == "application/json"
    return json.loads(body)


def _by_x(trials: list[dict[str, Any]]) -> dict[float, dict[str, Any]]:
    return {t["parameter"]["x"]: t for t in trials}


def test_experiment_list_and_summary(viewer):
    exp, server = viewer
    (listed,) = get_json(server, "/api/experiments")
    assert listed["id"] == exp.id and listed["name"] == "web" and listed["status"] == "DONE"
    assert (listed["finished"], listed["total"], listed["maxTrialNumber"]) == (3, 3, 3)
    assert "config" not in listed  # the list stays small

    info = get_json(server, f"/api/experiments/{exp.id}")
    assert info["counts"] == {"SUCCEEDED": 2, "FAILED": 1}
    assert info["tuner"] == "GridSearch" and info["optimizeMode"] == "maximize"
    assert info["best"]["value"] == 0.5 and info["best"]["parameter"] == {"x": 0.5}
    assert info["config"]["search_space"]["x"]["_type"] == "choice"
    assert info["elapsed"] > 0 and info["message"]


def test_trials_with_params_results_and_curves(viewer):
    exp, server = viewer
    trials = get_json(server, f"/api/experiments/{exp.id}/trials")
    assert [t["trialJobId"] for t in trials] == ["trial_0000", "trial_0001", "trial_0002"]
    by_x = _by_x(trials)
    assert set(by_x) == {0.25, 0.5, 1.0}
    ok, failed = by_x[0.5], by_x[1.0]
    assert ok["status"] == "SUCCEEDED" and ok["finalValue"] == 0.5
    assert ok["intermediate"] == pytest.approx([0.5 / 3, 1 / 3, 0.5])
    assert ok["duration"] >= 0 and ok["startTime"] <= ok["endTime"]
    assert failed["status"] == "FAILED" and failed["finalValue"] is None
    assert "x too big" in failed["error"] and len(failed["intermediate"]) == 3


def test_log_tail(viewer):
    exp, server = viewer
    trials = _by_x(get_json(server, f"/api/experiments/{exp.id}/trials"))
    base = f"/api/experiments/{exp.id}/trials"
    failed = trials[1.0]["trialJobId"]
    log = get_json(server, f"{base}/{failed}/log?stream=stderr")
    assert log["exists"] and "RuntimeError: x too big" in log["text"]
    # a function trial writes no stdout: an empty answer, not an error
    assert get_json(server, f"{base}/{failed}/log?stream=stdout")["exists"] is False

    ok = trials[0.5]["trialJobId"]
    Path(trials[0.5]["stdout"]).write_text("".join(f"line {i}\n" for i in range(1000)))
    tail = get_json(server, f"{base}/{ok}/log?stream=stdout&bytes=100")
    assert tail["truncated"] and tail["size"] > 5000
    assert tail["text"].endswith("line 999\n") and tail["text"].startswith("line ")
    assert len(tail["text"]) <= 100


def test_page_is_served_and_self_contained(viewer):
    exp, server = viewer
    for path in ("/", f"/experiments/{exp.id}", "/experiments"):  # "/" redirects to exp.id
        code, body, headers = get(server, path)
        assert code == 200 and headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        html = body.decode()
        assert "<script>" in html and "/api/experiments" in html
        # nothing fetched from elsewhere: machines that run experiments have no internet
        assert "http://" not in html and "https://" not in html
        assert "<script src" not in html and "<link" not in html
    assert get(server, "/favicon.ico")[0] == 204  # the browser's automatic request


def test_unknown_things_are_404_json(viewer):
    exp, server = viewer
    for path in ("/api/experiments/nope", "/api/experiments/nope/trials",
                 f"/api/experiments/{exp.id}/trials/trial_9999/log", "/api/other",
                 "/static/../server.py"):
        assert "error" in get_json(server, path, status=404), path
    assert "nope" in get_json(server, "/api/experiments/nope", status=404)["error"]


def test_log_path_traversal_is_refused(viewer):
    exp, server = viewer
    base = f"/api/experiments/{exp.id}/trials"
    for path, status in (
            (f"{base}/trial_0000/log?stream=../../../../etc/passwd", 400),
            (f"{base}/..%2F..%2F..%2Fetc/log?stream=stdout", 400),
            (f"{base}/..%2F..%2F/log", 400),
            ("/api/experiments/..%2F..%2Fetc/trials", 404),
            ("/api/experiments/%2E%2E/trials/trial_0000/log", 404)):
        answer = get_json(server, path, status=status)
        assert "root:" not in json.dumps(answer), path
    # a path in the database (or a link) leading out of the experiment folder is not read
    folder = exp.folder
    outside = folder.parent.parent / "secret.txt"
    outside.write_text("root:x:0:0")
    link = folder / "trials" / "trial_0001" / "stdout"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    os.symlink(outside, link)
    with st.ExperimentStore(folder / st.DB_NAME) as store:
        store.conn.execute("UPDATE trials SET stderr_path = ? WHERE trial_id = 'trial_0001'",
                           (str(outside),))
    try:
        for stream in ("stdout", "stderr"):
            answer = get_json(server, f"{base}/trial_0001/log?stream={stream}", status=403)
            assert "outside the experiment folder" in answer["error"]
    finally:
        link.unlink()


def test_database_is_opened_read_only(viewer):
    exp, server = viewer
    store = server.open_store(exp.id)
    try:
        assert store.conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 3
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.conn.execute("UPDATE experiment SET status = 'BROKEN'")
        store.conn.rollback()  # sqlite3 opened a transaction for the refused UPDATE
        # a viewer in the middle of a read does not lock out the runner (WAL)
        store.conn.execute("BEGIN")
        store.conn.execute("SELECT * FROM trials").fetchall()
        writer = sqlite3.connect(store.path, timeout=0.5)
        writer.execute("UPDATE experiment SET message = message")
        writer.commit()
        writer.close()
    finally:
        store.close()
    assert get_json(server, f"/api/experiments/{exp.id}")["status"] == "DONE"


def test_bad_id_and_busy_port_are_clear_errors(viewer):
    exp, server = viewer
    with pytest.raises(ConfigError, match="known ids: " + exp.id):
        make_server("127.0.0.1", 0, experiments_dir=server.root, default_id="nope")
    with pytest.raises(ConfigError, match="in use; pick another with --port"):
        make_server("127.0.0.1", server.server_address[1], experiments_dir=server.root)


@pytest.mark.timeout(90)  # a subprocess start: slow on a loaded machine
def test_view_command_serves_until_interrupted(viewer):
    exp, server = viewer
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchslim.cli.main", "experiment", "--experiments-dir",
         str(server.root), "view", exp.id, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        # a runner started in the background (nohup, `&`) ignores SIGINT, and children inherit
        # that; give the viewer the default a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = proc.stdout.readline()
        assert "read-only" in first and first.rstrip().endswith(f"/experiments/{exp.id}")
        url = first.split(" at ", 1)[1].strip()
        with urllib.request.urlopen(url.replace("/experiments/", "/api/experiments/"),
                                    timeout=5) as resp:
            assert json.loads(resp.read())["id"] == exp.id
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0  # generous: a loaded 2-core machine is slow to import and shut down
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


def _raw_get(port: int, host_header: str | None, path: str = "/api/experiments") -> int:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = [f"GET {path} HTTP/1.1"] + ([f"Host: {host_header}"] if host_header else [])
        sock.sendall(("\r\n".join(lines + ["Connection: close", "", ""])).encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_a_foreign_host_header_is_refused(viewer):
    _, server = viewer
    port = server.server_address[1]
    assert _raw_get(port, f"127.0.0.1:{port}") == 200
    assert _raw_get(port, f"localhost:{port}") == 200
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", None):
        assert _raw_get(port, host) == 421, host


def test_500_concurrent_requests_are_all_answered(viewer):
    import asyncio

    _, server = viewer
    port = server.server_address[1]

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/experiments HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
        return int(data.split(b" ", 2)[1])

    async def all_of_them() -> list[int]:
        return await asyncio.gather(*(one() for _ in range(500)))

    statuses = asyncio.run(asyncio.wait_for(all_of_them(), 60))
    assert statuses == [200] * 500
    # and the pool stayed a pool
    assert sum(t.name.startswith("webui-") for t in threading.enumerate()) <= 32 * 2


def test_idle_connections_do_not_starve_the_server(viewer, monkeypatch):
    import socket

    from torchslim.experiment.webui import server as server_module

    monkeypatch.setattr(server_module._Handler, "timeout", 1.0)
    _, server = viewer
    port = server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]  # > workers
    try:
        assert _raw_get(port, f"127.0.0.1:{port}") == 200  # answered once the idle time out
    finally:
        for sock in idle:
            sock.close()
