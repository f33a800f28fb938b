"""The web UI in a real browser (headless Chromium through Selenium + chromedriver): trial rows
appear while an experiment runs, plots are drawn, a kill is refused without the token and
done with it, and an update round-trips. Screenshots go to the test's tmp dir.

CI installs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``); elsewhere the test
skips when they are absent.
"""
from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import pytest

from torchslim.experiment import Experiment
from torchslim.experiment import store as st
from torchslim.experiment.webui.server import make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.timeout(120)


def browser(tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not CHROMIUM or not DRIVER:
        pytest.skip("chromium and chromedriver are not installed "
                    "(apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1400,1800", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def trial_status(folder: Path, trial_id: str) -> str | None:
    with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
        return {t.trial_id: t.status for t in store.trials(with_intermediate=False)}.get(trial_id)


def test_browser_sees_trials_plots_and_controls_with_token(tmp_path, exp_dir, code_dir):
    # five configurations; the fourth runs long so the browser can kill it
    configs = [{"x": 0.2, "steps": 3}, {"x": 0.6, "steps": 3}, {"x": 0.4, "steps": 3},
               {"x": 0.3, "sleep": 60}, {"x": 0.8, "steps": 3}]
    exp = Experiment({"combine_params": {"_type": "choice", "_value": configs}},
                     trial_command=f"{sys.executable} trial.py", trial_code_directory=code_dir,
                     tuner="Batch", trial_concurrency=2, max_trial_number=5,
                     experiment_name="browser")
    exp.create()
    runner = threading.Thread(target=exp.run, daemon=True)
    runner.start()
    server = make_server("127.0.0.1", 0, experiments_dir=exp_dir, default_id=exp.id)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                               daemon=True)
    serving.start()
    driver = None
    try:
        driver = browser(tmp_path)
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(driver, 45, poll_frequency=0.1)

        # the page rebuilds itself every 2 s: read and act through the live DOM, not
        # element handles that a refresh makes stale
        def text(selector: str) -> str:
            return driver.execute_script(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
                selector)

        def count(selector: str) -> int:
            return driver.execute_script("return document.querySelectorAll(arguments[0]).length",
                                         selector)

        def click(element_id: str) -> bool:
            return driver.execute_script(
                "const e = document.getElementById(arguments[0]); if (e) e.click(); return !!e",
                element_id)

        page = f"{server.url}/experiments/{exp.id}"
        driver.get(page)
        wait.until(lambda d: count(".lower tbody tr") >= 3)  # trial rows appear
        wait.until(lambda d: count("svg#hp-view polyline") >= 2)  # the hyper-parameter view
        wait.until(lambda d: "trial_0003" in text(".lower tbody") and "running" in text(".lower tbody"))
        assert count("svg.chart circle") >= 3  # results plotted
        assert text("#control-mode") == "read-only"
        driver.save_screenshot(str(tmp_path / "running.png"))

        # without the token: the UI asks, the server refuses, the trial keeps running
        driver.execute_script("select('trial_0003')")
        wait.until(lambda d: click("kill-btn"))
        wait.until(lambda d: "refused" in text("#control-msg"))
        assert "control token" in text("#control-msg")
        assert trial_status(exp.folder, "trial_0003") == "RUNNING"
        driver.save_screenshot(str(tmp_path / "refused.png"))

        # with the token (the link the UI prints): update, then kill
        driver.get(f"{page}?token={server.tokens.token(exp.id)}#trial_0003")
        wait.until(lambda d: text("#control-mode") == "token set")
        assert "token" not in driver.current_url  # kept out of the address bar and history
        box = driver.find_element(By.ID, "upd-concurrency")
        box.clear()
        box.send_keys("3")  # typing survives the page's refreshes (kept as a draft)
        wait.until(lambda d: click("update-btn"))
        wait.until(lambda d: "updated: trial_concurrency 2 → 3" in text("#control-msg"))
        with st.ExperimentStore(exp.folder / st.DB_NAME, readonly=True) as store:
            assert store.experiment()["config"]["trial_concurrency"] == 3
        wait.until(lambda d: click("kill-btn"))
        wait.until(lambda d: "trial_0003 killed" in text("#control-msg"))
        wait.until(lambda d: trial_status(exp.folder, "trial_0003") == "USER_CANCELED")
        wait.until(lambda d: "user canceled" in text(".lower tbody"))
        driver.find_element(By.ID, "hp-view").screenshot(str(tmp_path / "hyperparameters.png"))
        driver.save_screenshot(str(tmp_path / "killed.png"))
        runner.join(60)
        assert {t.status for t in exp.trials()} == {"SUCCEEDED", "USER_CANCELED"}
        assert all((tmp_path / f).stat().st_size > 5000 for f in
                   ("running.png", "refused.png", "killed.png", "hyperparameters.png"))
        (tmp_path / "where.json").write_text(json.dumps({"screenshots": str(tmp_path)}))
    finally:
        if driver is not None:
            driver.quit()
        exp.stop()
        server.shutdown()
        server.server_close()
        runner.join(30)
