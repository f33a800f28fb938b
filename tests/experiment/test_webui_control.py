"""The web UI's control API (token-gated kill/update) and analysis endpoints, over HTTP."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

import torchslim
from torchslim.experiment import Experiment
from torchslim.experiment.webui.server import make_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("webctl") / "experiments"
    exp = Experiment({"x": torchslim.uniform(0, 1), "k": torchslim.choice("a", "b")},
                     trial_function=lambda p: p["x"] + (p["k"] == "a"), tuner="Random", seed=0,
                     max_trial_number=8, experiments_dir=root).run()
    server = make_server("127.0.0.1", 0, experiments_dir=root, default_id=exp.id)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield exp, server
    server.shutdown()
    server.server_close()


def call(server, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Torchslim-Token"] = token
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, headers=headers,
                                     method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_control_needs_the_experiment_token(served):
    exp, server = served
    path = f"/api/experiments/{exp.id}/update"
    for token in (None, "wrong", server.tokens.token("otherexp")):
        code, answer = call(server, path, {"trialConcurrency": 3}, token)
        assert code == 403 and "read-only" in answer["error"]
    assert exp.trials()[0].status == "SUCCEEDED"
    token = server.tokens.token(exp.id)
    code, answer = call(server, path, {"trialConcurrency": 3, "maxTrialNumber": 9}, token)
    assert code == 200 and answer["changed"]["trial_concurrency"] == [1, 3]
    assert Experiment.open(exp.id, server.root).config.max_trial_number == 9
    code, answer = call(server, f"/api/experiments/{exp.id}/kill", {"trial": "trial_0001"}, token)
    assert code == 409 and "already finished (SUCCEEDED)" in answer["error"]
    code, answer = call(server, path, {"bogus": 1}, token)
    assert code == 409 and "unknown key(s) ['bogus']" in answer["error"]
    assert call(server, "/api/experiments/nope/kill", {"trial": "x"}, token)[0] == 404


def test_importance_ranks_the_parameters(served):
    exp, server = served
    code, answer = call(server, f"/api/experiments/{exp.id}/importance")
    assert code == 200 and answer["trials"] == 8
    assert set(answer["importance"]) == {"x", "k"} and answer["method"] in ("fANOVA", "PED-ANOVA")
    # k shifts the result by 1, x by at most 1: k matters more
    assert answer["importance"]["k"] > answer["importance"]["x"]


def test_page_inlines_the_analysis_views(served):
    exp, server = served
    with urllib.request.urlopen(f"{server.url}/compare/{exp.id}/{exp.id}", timeout=5) as resp:
        html = resp.read().decode()
    assert "parallelCoordinates" in html and "renderCompare" in html and "<script src" not in html
