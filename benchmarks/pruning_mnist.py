"""Every pruner torchslim ships, at 50 / 70 / 90 % sparsity, on LeNet + the embedded MNIST.

Protocol (every choice on a validation split, the test split touched once per run):

- The 8,000 training images are split once: 1,000 held out for validation, 7,000 to train on.
- The dense LeNet is trained per seed (``--dense-epochs`` at Adam lr 1e-3, fixed); every run
  starts from a copy of its seed's dense weights. Slim needs BatchNorm: it runs on LeNet with a
  BN after conv1, conv2 and fc1 (its own dense model, trained the same way), next to L1Norm on
  that same model for a like-for-like row.
- Selection: for each pruner, the fine-tuning learning rate and budget (``--lrs`` x
  ``--epoch-choices``) are chosen on the validation split, at 70 % sparsity, with a selection
  seed (100) that is not one of the reported seeds. The test split is never read there.
- Reported runs: each pruner x sparsity x seed (default 5 seeds) with its chosen lr and budget;
  one-shot pruners prune first and fine-tune for the whole budget (their "one-shot" figure is
  validation accuracy right after pruning); schedules and movement pruning prune *during* the
  budget (finishing at ~60 %) and fine-tune for the rest. Test accuracy is read once, at the end.
- Remaining params: structured results are shrunk with ``ModelSpeedup`` and counted;
  fine-grained ones count non-zero parameters.

Resumable: every finished run is appended to ``results/pruning_mnist.json`` at once (the
markdown and plot are re-rendered from it); a rerun skips what is there. ``--fresh`` starts over.
Runs go to ``--workers`` processes (one thread each).

Run: ``python benchmarks/pruning_mnist.py [--workers 2] [--seeds 5] [--only L1Norm Taylor] [--quick]``
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from torchslim import TorchEvaluator
from torchslim.datasets import load_mnist
from torchslim.models import LeNet
from torchslim.pruning import (
    ActivationAPoZRankPruner, ActivationMeanRankPruner, AGPPruner, FPGMPruner, L1NormPruner, L2NormPruner,
    LevelPruner, LinearPruner, LotteryTicketPruner, MovementPruner, SlimPruner, TaylorPruner,
)
from torchslim.utils.metrics import count_nonzero_params, count_params
from torchslim.utils.training import evaluate_accuracy

from pruning_mnist_report import render, save_all
from results_io import load, machine

SPARSITIES = (0.7, 0.5, 0.9)  # run in this order: a grid cut short still has the 70 % column complete
LRS = (1e-3, 3e-4)
EPOCH_CHOICES = (1, 2)
SELECT_SEED, SELECT_SPARSITY = 100, 0.7
DENSE_LR, BATCH = 1e-3, 64
SPLIT_SEED = 1234
CACHE = Path(tempfile.gettempdir()) / "torchslim-bench"  # dense weights, so that a resumed grid skips training


class LeNetBN(LeNet):
    """LeNet with BatchNorm after conv1, conv2 and fc1 (for Network Slimming)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(20), nn.BatchNorm2d(50), nn.BatchNorm1d(500)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2, 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2, 2)
        x = F.relu(self.bn3(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


ARCHS: dict[str, Callable[[], nn.Module]] = {"LeNet": LeNet, "LeNet+BN": LeNetBN}


def step(batch, model):
    return F.cross_entropy(model(batch[0]), batch[1])


# name -> (structured?, architecture, builder(model, config, evaluator, budget_steps) -> pruner)
def _one_shot(cls: type, **kw) -> Callable:
    return lambda model, cfg, ev, steps: cls(model, cfg, **kw)


def _data(cls: type) -> Callable:
    return lambda model, cfg, ev, steps: cls(model, cfg, ev, training_steps=20)


def _schedule(schedule: type, sub: Callable) -> Callable:
    def build(model, cfg, ev, steps):
        times = 10
        return schedule(sub(model, cfg, ev, steps), interval_steps=max(1, int(0.6 * steps) // times),
                        total_times=times, evaluator=ev)

    return build


def _movement(model, cfg, ev, steps):
    return MovementPruner(model, cfg, ev, warmup_step=int(0.1 * steps), cooldown_begin_step=int(0.6 * steps))


def _slim(model, cfg, ev, steps):
    bn_cfg = [{"op_types": ["BatchNorm2d", "BatchNorm1d"], "sparse_ratio": cfg[0]["sparse_ratio"]}]
    return SlimPruner(model, bn_cfg, ev, training_steps=steps // 4, regular_scale=1e-4)


PRUNERS: dict[str, tuple[bool, str, Callable]] = {
    "Level (one-shot)": (False, "LeNet", _one_shot(LevelPruner)),
    "L1Norm": (True, "LeNet", _one_shot(L1NormPruner)),
    "L2Norm": (True, "LeNet", _one_shot(L2NormPruner)),
    "FPGM": (True, "LeNet", _one_shot(FPGMPruner)),
    "Taylor": (True, "LeNet", _data(TaylorPruner)),
    "APoZ": (True, "LeNet", _data(ActivationAPoZRankPruner)),
    "MeanRank": (True, "LeNet", _data(ActivationMeanRankPruner)),
    "Slim (LeNet+BN)": (True, "LeNet+BN", _slim),
    "L1Norm (LeNet+BN)": (True, "LeNet+BN", _one_shot(L1NormPruner)),
    "Movement": (False, "LeNet", _movement),
    "Linear(Level)": (False, "LeNet", _schedule(LinearPruner, _one_shot(LevelPruner))),
    "AGP(Level)": (False, "LeNet", _schedule(AGPPruner, _one_shot(LevelPruner))),
    "AGP(Taylor)": (True, "LeNet", _schedule(AGPPruner, _data(TaylorPruner))),
    "LotteryTicket(Level)": (False, "LeNet", _schedule(LotteryTicketPruner, _one_shot(LevelPruner))),
}
PRUNES_WHILE_TRAINING = (MovementPruner, AGPPruner, LinearPruner, LotteryTicketPruner)


# --- one process's view of the data ---------------------------------------------------------------
_DATA: dict[str, Any] = {}


def _init_worker(val_size: int, threads: int) -> None:
    torch.set_num_threads(threads)
    full_train, test = load_mnist()
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    _DATA.update(train=Subset(full_train, order[val_size:]), val=Subset(full_train, order[:val_size]), test=test)


def _loader(seed: int) -> DataLoader:
    # a fresh loader per run: its shuffling depends on the seed only, not on what ran before
    return DataLoader(_DATA["train"], batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed))


def remaining_params(model: nn.Module, masks: dict, structured: bool) -> int:
    if not structured:
        return count_nonzero_params(model)
    from torchslim.speedup import ModelSpeedup

    small = ModelSpeedup(copy.deepcopy(model), torch.randn(2, 1, 28, 28), masks).speedup_model()
    return count_params(small)


def train_dense(arch: str, seed: int, epochs: int, read_test: bool) -> dict:
    torch.manual_seed(seed)
    model = ARCHS[arch]()
    ev = TorchEvaluator.from_dataloader(_loader(seed), torch.optim.Adam(model.parameters(), lr=DENSE_LR), step)
    ev.bind_model(model)
    ev.train(max_epochs=epochs)
    ev.close()
    return {"arch": arch, "seed": seed, "val_acc": evaluate_accuracy(model, _DATA["val"]),
            "test_acc": evaluate_accuracy(model, _DATA["test"]) if read_test else None,
            "params": count_params(model), "state": model.state_dict()}


def cached_dense(task: dict) -> dict:
    """Dense training is deterministic; its weights are kept on disk so that a resumed grid skips it."""
    recipe = {**task, "train": len(_DATA["train"]), "val": len(_DATA["val"]), "lr": DENSE_LR, "batch": BATCH,
              "split_seed": SPLIT_SEED, "torch": torch.__version__}
    path = CACHE / f"pruning_mnist-dense-{hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]}.pt"
    if path.exists():
        return torch.load(path)
    result = train_dense(task["arch"], task["seed"], task["epochs"], task["read_test"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result, path)
    return result


def prune_and_tune(name: str, state: dict, sparsity: float, seed: int, lr: float, epochs: int,
                   read_test: bool) -> dict:
    """One run: prune a copy of the dense weights, fine-tune, measure (test only if ``read_test``)."""
    structured, arch, build = PRUNERS[name]
    torch.manual_seed(seed)
    model = ARCHS[arch]()
    model.load_state_dict(state)
    loader = _loader(seed)
    steps = epochs * len(loader)
    cfg = [{"op_types": ["Conv2d", "Linear"], "exclude_op_names": ["fc2"], "sparse_ratio": sparsity}]
    ev = TorchEvaluator.from_dataloader(loader, torch.optim.Adam(model.parameters(), lr=lr), step)
    t0 = time.time()
    pruner = build(model, cfg, ev, steps)
    if isinstance(pruner, PRUNES_WHILE_TRAINING):
        pruner.compress(max_steps=steps)  # prunes while training: the budget includes fine-tuning
        one_shot = None
    else:
        pruner.compress()
        one_shot = evaluate_accuracy(model, _DATA["val"])
        ev.bind_model(model)
        ev.train(max_steps=steps)
    masks = pruner.get_masks()
    pruner.unwrap_model()
    return {"pruner": name, "structured": structured, "arch": arch, "sparsity": sparsity, "seed": seed,
            "lr": lr, "epochs": epochs, "steps": steps, "one_shot_val_acc": one_shot,
            "val_acc": evaluate_accuracy(model, _DATA["val"]),
            "test_acc": evaluate_accuracy(model, _DATA["test"]) if read_test else None,
            "params": remaining_params(model, masks, structured), "seconds": time.time() - t0}


def work(task: dict) -> dict:
    """Run one task in a worker; a failure comes back as a row, it never kills the grid."""
    try:
        if task["kind"] == "dense":
            return {"task": task, "result": cached_dense(task)}
        kw = {k: task[k] for k in ("sparsity", "seed", "lr", "epochs")}
        return {"task": task, "result": prune_and_tune(task["pruner"], task["state"], read_test=task["kind"] == "test",
                                                       **kw)}
    except Exception as exc:  # reported in the JSON and the table, the grid goes on
        return {"task": task, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=4)}


# --- the grid ---------------------------------------------------------------------------------------
def choose(select_rows: list[dict], name: str, n_choices: int) -> tuple[float, int] | None:
    """The (lr, epochs) with the best validation accuracy; ties go to the smaller budget."""
    rows = [r for r in select_rows if r["pruner"] == name]
    if len(rows) < n_choices:
        return None
    best = max(rows, key=lambda r: (r["val_acc"], -r["epochs"], -r["lr"]))
    return best["lr"], best["epochs"]


class Grid:
    """The JSON on disk and the pool that fills it, one finished task at a time."""

    def __init__(self, name: str, data: dict, pool: ProcessPoolExecutor | None) -> None:
        self.name, self.data, self.pool = name, data, pool
        self.t0 = time.time()

    def run(self, phase: str, tasks: list[dict], on_result: Callable[[dict, dict], None]) -> None:
        if not tasks:
            return
        total, t0 = len(tasks), time.time()
        print(f"[{phase}] {total} runs", flush=True)
        outputs = self._map(tasks)
        for done, out in enumerate(outputs, 1):
            task = {k: v for k, v in out["task"].items() if k != "state"}
            if "error" in out:
                self.data["failures"].append({**task, "error": out["error"], "trace": out["trace"]})
                print(f"[{phase} {done}/{total}] FAILED {task}: {out['error']}", flush=True)
            else:
                on_result(task, out["result"])
            self.save()
            eta = (time.time() - t0) / done * (total - done)
            print(f"[{phase} {done}/{total}] {_describe(task, out.get('result'))}  "
                  f"(elapsed {time.time() - self.t0:.0f} s, phase ETA {eta:.0f} s)", flush=True)

    def _map(self, tasks: list[dict]) -> Iterable[dict]:
        if self.pool is None:
            return (work(t) for t in tasks)
        return (f.result() for f in as_completed([self.pool.submit(work, t) for t in tasks]))

    def save(self, with_plot: bool = False) -> None:
        save_all(self.name, self.data, render(self.data, list(PRUNERS)), list(PRUNERS) if with_plot else None)


def _describe(task: dict, result: dict | None) -> str:
    if task["kind"] == "dense":
        return f"dense {task['arch']} seed {task['seed']}" + (f": val {result['val_acc']:.2f}" if result else "")
    head = f"{task['pruner']} @ {task['sparsity']:.0%} seed {task['seed']} lr {task['lr']:g} x{task['epochs']} ep"
    if not result:
        return head
    acc = result["test_acc"] if task["kind"] == "test" else result["val_acc"]
    return f"{head}: {'test' if task['kind'] == 'test' else 'val'} {acc:.2f}, params {result['params']:,}"


def protocol(args: argparse.Namespace) -> dict:
    return {"dense_epochs": args.dense_epochs, "dense_lr": DENSE_LR, "batch": BATCH, "val": args.val,
            "lrs": list(args.lrs), "epoch_choices": list(args.epoch_choices), "select_seed": SELECT_SEED,
            "select_sparsity": SELECT_SPARSITY, "split_seed": SPLIT_SEED}


def start_data(args: argparse.Namespace) -> dict:
    old = None if args.fresh else load(args.name)
    if old is not None and old.get("protocol") != protocol(args):
        sys.exit(f"results/{args.name}.json was written under another protocol ({old.get('protocol')}); "
                 "rerun with --fresh to start over, or with the same settings to resume")
    data = old or {"protocol": protocol(args), "dense": [], "select": [], "runs": [], "failures": []}
    data["machine"] = machine(shared=True)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dense-epochs", type=int, default=4)
    parser.add_argument("--lrs", type=float, nargs="+", default=list(LRS), help="fine-tuning lrs to choose from")
    parser.add_argument("--epoch-choices", type=int, nargs="+", default=list(EPOCH_CHOICES),
                        help="training budgets (epochs, fine-tuning included) to choose from")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--val", type=int, default=1000, help="training images held out for validation")
    parser.add_argument("--only", nargs="*", help="subset of pruner names")
    parser.add_argument("--sparsities", default=",".join(str(s) for s in SPARSITIES))
    parser.add_argument("--workers", type=int, default=2, help="processes (one thread each)")
    parser.add_argument("--threads", type=int, default=1, help="threads per process")
    parser.add_argument("--fresh", action="store_true", help="ignore the saved JSON and start over")
    parser.add_argument("--name", default="pruning_mnist", help="results file stem")
    parser.add_argument("--render", action="store_true", help="only re-render the markdown and plot from the JSON")
    parser.add_argument("--quick", action="store_true",
                        help="L1Norm and AGP(Level) at 70%%, 2 seeds, lr 1e-3, 1 epoch (to results/quick/)")
    args = parser.parse_args()
    if args.quick:
        args.only, args.sparsities, args.seeds, args.lrs, args.epoch_choices, args.dense_epochs, args.name = (
            ["L1Norm", "AGP(Level)"], "0.7", 2, [1e-3], [1], 2, "quick/pruning_mnist")
    unknown = [n for n in args.only or [] if n not in PRUNERS]
    if unknown:
        parser.error(f"unknown pruner(s) {unknown}; known: {', '.join(PRUNERS)}")
    names = args.only or list(PRUNERS)
    sparsities = [float(s) for s in args.sparsities.split(",")]
    seeds = list(range(args.seeds))
    data = start_data(args)
    if args.render:
        Grid(args.name, data, None).save(with_plot=True)
        print(render(data, list(PRUNERS)))
        return
    data["failures"] = []  # failed runs are retried

    _init_worker(args.val, args.threads)
    data.update(train=len(_DATA["train"]), val_size=len(_DATA["val"]), test_size=len(_DATA["test"]))
    pool = (ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                initargs=(args.val, args.threads)) if args.workers > 1 else None)
    grid = Grid(args.name, data, pool)
    try:
        run_grid(grid, names, sparsities, seeds, args)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        grid.save(with_plot=True)
    print(render(data, list(PRUNERS)))


def run_grid(grid: Grid, names: list[str], sparsities: list[float], seeds: list[int], args: argparse.Namespace) -> None:
    data = grid.data
    have_select = {(r["pruner"], r["lr"], r["epochs"]) for r in data["select"]}
    select = [{"kind": "select", "pruner": n, "sparsity": SELECT_SPARSITY, "seed": SELECT_SEED, "lr": lr, "epochs": e}
              for n in names for lr in args.lrs for e in args.epoch_choices if (n, lr, e) not in have_select]
    have_runs = {(r["pruner"], r["sparsity"], r["seed"]) for r in data["runs"]}
    pending = [(s, seed, n) for s in sparsities for seed in seeds for n in names if (n, s, seed) not in have_runs]

    # dense weights: retrained (deterministically) for every seed that still has runs to do
    need = {(PRUNERS[n][1], SELECT_SEED) for n in {t["pruner"] for t in select}}
    need |= {(PRUNERS[n][1], seed) for _, seed, n in pending}
    states: dict[tuple[str, int], dict] = {}

    def dense_done(task: dict, result: dict) -> None:
        states[(result["arch"], result["seed"])] = result.pop("state")
        old = next((r for r in data["dense"] if (r["arch"], r["seed"]) == (result["arch"], result["seed"])), None)
        if old is None:
            data["dense"].append(result)
        elif old["val_acc"] != result["val_acc"]:
            print(f"warning: dense {result['arch']} seed {result['seed']} retrained to val {result['val_acc']} "
                  f"(saved: {old['val_acc']}); the runs of this seed mix two dense models", flush=True)

    grid.run("dense", [{"kind": "dense", "arch": a, "seed": s, "epochs": args.dense_epochs,
                        "read_test": s != SELECT_SEED} for a, s in sorted(need)], dense_done)
    grid.run("select", [{**t, "state": states[(PRUNERS[t["pruner"]][1], SELECT_SEED)]} for t in select],
             lambda task, result: data["select"].append(result))
    tasks = []
    for sparsity, seed, name in pending:
        if (PRUNERS[name][1], seed) not in states:
            continue  # its dense model failed to train (listed under failures)
        chosen = choose(data["select"], name, len(args.lrs) * len(args.epoch_choices))
        if chosen is None:
            print(f"{name}: selection incomplete (a selection run failed); its runs are skipped", flush=True)
            continue
        tasks.append({"kind": "test", "pruner": name, "sparsity": sparsity, "seed": seed, "lr": chosen[0],
                      "epochs": chosen[1], "state": states[(PRUNERS[name][1], seed)]})
    grid.run("runs", tasks, lambda task, result: data["runs"].append(result))


if __name__ == "__main__":
    main()
