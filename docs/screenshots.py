"""Regenerate the web UI screenshots in docs/img from real experiments (headless Chromium).

Runs three small in-process experiments (a 5-parameter TPE search, the same with Random for
the comparison page, and a two-objective NSGA2 search), serves them and captures:
docs/img/webui_hyperparameters.png, webui_pareto.png, webui_compare.png, webui_control.png.

    python docs/screenshots.py      # needs chromium + chromedriver + selenium
"""
from __future__ import annotations

import math
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

import torchslim  # noqa: E402
from torchslim.experiment import Experiment  # noqa: E402
from torchslim.experiment.webui.server import make_server  # noqa: E402

IMG = Path(__file__).resolve().parent / "img"
SPACE = {"lr": torchslim.loguniform(1e-5, 1), "dropout": torchslim.uniform(0, 0.8),
         "width": torchslim.choice(16, 32, 64, 128), "depth": torchslim.randint(1, 9),
         "optimizer": torchslim.choice("sgd", "adam", "adamw")}


def accuracy(p: dict) -> float:
    """A made-up but plausible accuracy surface: lr matters most, then width and depth."""
    lr = -(math.log10(p["lr"]) + 3) ** 2 / 3
    width = {16: -0.8, 32: -0.3, 64: 0.0, 128: -0.1}[p["width"]]
    depth = -0.04 * (p["depth"] - 5) ** 2
    opt = {"sgd": -0.3, "adam": 0.0, "adamw": 0.05}[p["optimizer"]]
    return round(95 + 2 * (lr + width + depth + opt) - 2 * p["dropout"] ** 2, 3)


def pareto(p: dict) -> dict:
    return {"accuracy": accuracy(p), "latency_ms": round(0.2 * p["depth"] * p["width"] / 16, 3)}


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="torchslim-shots-"))
    tpe = Experiment(SPACE, trial_function=accuracy, tuner="TPE", seed=0, max_trial_number=60,
                     experiment_name="tpe search", experiments_dir=root).run()
    rnd = Experiment(SPACE, trial_function=accuracy, tuner="Random", seed=0, max_trial_number=60,
                     experiment_name="random search", experiments_dir=root).run()
    mo = Experiment(SPACE, trial_function=pareto, tuner="NSGA2", seed=0, max_trial_number=60,
                    tuner_args={"population_size": 12}, experiment_name="accuracy vs latency",
                    objectives=[{"name": "accuracy", "direction": "maximize"},
                                {"name": "latency_ms", "direction": "minimize"}],
                    experiments_dir=root).run()
    server = make_server("127.0.0.1", 0, experiments_dir=root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,2200", f"--user-data-dir={root / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 60)
    try:
        def card(exp_id: str, element: str, out: str, token: bool = False) -> None:
            query = f"?token={server.tokens.token(exp_id)}" if token else ""
            driver.get(f"{server.url}/experiments/{exp_id}{query}")
            wait.until(lambda d: d.execute_script(
                "return !!document.getElementById(arguments[0]) && "
                "!(document.getElementById('importance-card') || {}).innerText?.includes('computing')",
                element))
            driver.execute_script(
                "const e = document.getElementById(arguments[0]); e.closest('.card').scrollIntoView()",
                element)
            driver.execute_script("return document.getElementById(arguments[0]).closest('.card')",
                                  element).screenshot(str(IMG / out))

        card(tpe.id, "hp-view", "webui_hyperparameters.png")
        card(mo.id, "pareto", "webui_pareto.png")
        card(tpe.id, "control", "webui_control.png", token=True)
        driver.get(f"{server.url}/compare/{tpe.id}/{rnd.id}")
        wait.until(lambda d: d.execute_script("return !!document.getElementById('compare')"))
        driver.execute_script("return document.getElementById('app')").screenshot(
            str(IMG / "webui_compare.png"))
        driver.get(f"{server.url}/experiments/{tpe.id}")
        wait.until(lambda d: d.execute_script(
            "return !!document.getElementById('importance') ")
        )
        driver.execute_script("document.getElementById('importance').closest('.card')"
                              ".scrollIntoView()")
        driver.execute_script("return document.getElementById('importance').closest('.card')"
                              ).screenshot(str(IMG / "webui_importance.png"))
    finally:
        driver.quit()
        server.shutdown()
    print("wrote", ", ".join(p.name for p in sorted(IMG.glob("webui_*.png"))))


if __name__ == "__main__":
    main()
