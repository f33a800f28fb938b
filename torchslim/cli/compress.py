"""``torchslim compress``: a model and a budget in, a verified, smaller, faster model out."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports torch only when a command runs
    import torch

    from torchslim.auto.experiment import CompressExperiment

MNIST_MODELS = ("lenet", "lenet5")
CACHE_DIR = ".torchslim-cache"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compress", help="search per-layer sparsities that meet a budget, then prune, speed up and fine-tune",
        description="Auto-compression to a budget. On the embedded MNIST (lenet, lenet5, or a model of yours "
                    "taking 1x28x28 images) it trains the dense model, searches on a validation split, "
                    "fine-tunes and reports test accuracy once; other models (torchvision:NAME) run "
                    "structure-only with random weights. Writes model.pt, report.md/json/png to --out.",
    )
    parser.add_argument("--model", default="lenet5",
                        help="lenet | lenet5 | torchvision:NAME | package.module:factory (default: %(default)s)")
    budget = parser.add_argument_group("budget (at least one; a number is absolute, '50%%' or '0.5x' is a share of dense)")
    budget.add_argument("--params", help="parameter budget, e.g. 2421 or 10%%")
    budget.add_argument("--macs", help="MACs budget, e.g. 25%%")
    budget.add_argument("--latency-ms", help="latency budget at --batch, e.g. 0.5x or 3.2")
    parser.add_argument("--algorithm", default="tuner", choices=["tuner", "netadapt", "anneal", "uniform"],
                        help="search (default: %(default)s)")
    parser.add_argument("--tuner", default="TPE", help="tuner for --algorithm tuner (default: %(default)s)")
    parser.add_argument("--trials", type=int, default=30, help="candidates for --algorithm tuner (default: %(default)s)")
    parser.add_argument("--proxy", choices=["evaluate", "sensitivity", "magnitude"],
                        help="how candidates are scored (default: evaluate with data, magnitude without)")
    parser.add_argument("--short-term-images", type=int, default=2000,
                        help="short-term fine-tune of each candidate: one pass over this many images; 0: none "
                             "(default: %(default)s)")
    parser.add_argument("--pruner", default="l1", choices=["l1", "l2", "fpgm"], help="channel importance (default: %(default)s)")
    parser.add_argument("--max-sparsity", type=float, default=0.9, help="per-layer cap (default: %(default)s)")
    parser.add_argument("--exclude", nargs="*", default=[], help="layer names never pruned")
    parser.add_argument("--weights", help="state_dict to start from (default: train on the embedded MNIST)")
    parser.add_argument("--epochs", type=int, default=4, help="dense training epochs (default: %(default)s)")
    parser.add_argument("--finetune-epochs", type=int, default=3, help="fine-tuning epochs (default: %(default)s)")
    parser.add_argument("--distill", action="store_true", help="fine-tune with knowledge distillation from the dense model")
    parser.add_argument("--int8", action="store_true", help="also deploy the result as real int8")
    parser.add_argument("--input-shape", help="example input shape, e.g. 1,3,224,224 (default: by model)")
    parser.add_argument("--batch", type=int, default=32, help="batch size that latency is about (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for latency (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, training and search (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="train on 2,000 images only (smoke test)")
    parser.add_argument("--cache-dir", default=CACHE_DIR,
                        help="latency/sensitivity cache (default: %(default)s, or the experiment's cache/)")
    parser.add_argument("--out", default=None,
                        help="output directory (default: torchslim-compress, or the experiment's result/)")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    exp = parser.add_argument_group("experiment (every candidate a trial: web UI, status, resumable after kill -9)")
    exp.add_argument("--experiment", nargs="?", const="", metavar="ID",
                     help="record the search as an experiment (a new id; with ID: that one, continued "
                          "if it exists — re-run the same command after a crash)")
    exp.add_argument("--resume", metavar="ID", help="continue compress experiment ID with its stored settings")
    exp.add_argument("--experiments-dir", default=None,
                     help="where experiments live (default: $TORCHSLIM_EXPERIMENTS_DIR or ~/torchslim-experiments)")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="evaluate candidates as Ray tasks (no ADDRESS: a local Ray; 'auto' or HOST:PORT: "
                             "a cluster); needs pip install 'torchslim[ray]'")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="--algorithm tuner: candidates proposed (and, with --ray, scored) at once "
                             "(NNI's trialConcurrency; default: %(default)s)")
    parser.set_defaults(func=run, _compress_parser=parser)


# what defines a search: a stored experiment is continued only with the same values
SETTINGS = ("model", "params", "macs", "latency_ms", "algorithm", "tuner", "trials", "proxy", "short_term_images",
            "pruner", "max_sparsity", "exclude", "weights", "epochs", "finetune_epochs", "distill", "int8",
            "input_shape", "batch", "threads", "seed", "quick", "concurrency")


def run(args: argparse.Namespace) -> int:
    from torchslim.errors import ConfigError

    try:
        experiment = _experiment(args)
    except ConfigError as exc:
        raise SystemExit(f"torchslim compress: {exc}") from None
    if experiment is None:
        return _run(args, None)
    if experiment.status == "DONE" and (experiment.folder / "result" / "report.md").is_file():
        print(f"experiment {experiment.id} is done; its result is in {experiment.folder / 'result'}/\n")
        print((experiment.folder / "result" / "report.md").read_text())
        return 0
    try:
        with experiment:
            return _run(args, experiment)
    except ConfigError as exc:
        raise SystemExit(f"torchslim compress: {exc}") from None


def _experiment(args: argparse.Namespace) -> "CompressExperiment | None":
    """The experiment --experiment / --resume name (settings read back for --resume), or None."""
    if args.experiment is None and args.resume is None:
        return None
    from torchslim.auto.experiment import CompressExperiment
    from torchslim.errors import ConfigError

    if args.resume is not None:
        if args.experiment:
            raise ConfigError("give --experiment ID or --resume ID, not both")
        stored = CompressExperiment.stored_settings(args.resume, args.experiments_dir)
        given = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) != args._compress_parser.get_default(k)}
        clash = {k: v for k, v in given.items() if k in stored and stored[k] != v}
        if clash:
            raise ConfigError(f"--resume {args.resume} continues with its stored settings; "
                              + ", ".join(f"--{k.replace('_', '-')} {v!r} (stored: {stored[k]!r})"
                                          for k, v in clash.items())
                              + " would make it another search: drop the option, or start a new experiment")
        for key, value in stored.items():
            setattr(args, key, value)
    settings = {key: getattr(args, key) for key in SETTINGS}
    experiment = CompressExperiment.open(settings, args.resume or args.experiment or None, args.experiments_dir,
                                         name=f"compress {args.model}")
    print(f"[torchslim compress] experiment {experiment.id} in {experiment.folder} "
          f"(resume: torchslim compress --resume {experiment.id}; web UI: torchslim experiment view {experiment.id})",
          flush=True)
    return experiment


def _run(args: argparse.Namespace, experiment: "CompressExperiment | None") -> int:
    import torch

    from torchslim.auto import compress
    from torchslim.errors import ConfigError

    target = {k: v for k, v in (("params", args.params), ("macs", args.macs), ("latency_ms", args.latency_ms)) if v}
    if not target:
        raise SystemExit("torchslim compress: give a budget: --params, --macs and/or --latency-ms")
    torch.manual_seed(args.seed)
    model, shape = _model(args.model)
    if args.input_shape:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    example = torch.randn(1, *shape[1:])
    progress = not args.no_progress
    mnist = args.model in MNIST_MODELS or shape[1:] == (1, 28, 28)
    evaluate_fn = train_fn = calibration = short_term_fn = None
    teacher = None
    if mnist:
        from torchslim.auto.mnist import accuracy_on, finetune, mnist_splits
        from torchslim.utils.training import train_epochs

        fit, val, test = mnist_splits(args.seed, limit=2000 if args.quick else None)
        dense_file = experiment.folder / "dense.pt" if experiment is not None else None
        if args.weights:
            model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        elif dense_file is not None and dense_file.is_file():
            _say(progress, f"the dense {args.model} trained by the first run: {dense_file}")
            model.load_state_dict(torch.load(dense_file, map_location="cpu", weights_only=True))
        else:
            _say(progress, f"training the dense {args.model} for {args.epochs} epochs on {len(fit)} images")
            train_epochs(model, fit, args.epochs, lr=2e-3, seed=args.seed, progress=progress, desc="dense")
            if dense_file is not None:  # a resumed run scores candidates of this very model
                torch.save(model.state_dict(), dense_file.with_suffix(".tmp"))
                dense_file.with_suffix(".tmp").replace(dense_file)
        evaluate_fn = accuracy_on(val)
        teacher = model if args.distill else None

        def train_fn(slim: torch.nn.Module) -> None:
            finetune(slim, fit, args.finetune_epochs, teacher=teacher, seed=args.seed, progress=progress)
        calibration = torch.utils.data.DataLoader(fit, batch_size=64)
        if args.short_term_images > 0:
            short = torch.utils.data.Subset(fit, range(min(args.short_term_images, len(fit))))

            def short_term_fn(masked: torch.nn.Module) -> None:
                finetune(masked, short, 1, seed=args.seed)
    elif args.int8:
        calibration = [torch.randn(8, *shape[1:]) for _ in range(4)]
    try:
        result = compress(
            model, example, evaluate_fn, target, train_fn, algorithm=args.algorithm,
            algorithm_options={"tuner_name": args.tuner, "trials": args.trials, "concurrency": args.concurrency}
            if args.algorithm == "tuner" else None,
            proxy=args.proxy, short_term_fn=short_term_fn, pruner=args.pruner, exclude=args.exclude, max_sparsity=args.max_sparsity,
            latency_input=torch.randn(args.batch, *shape[1:]), threads=args.threads, quantize=args.int8,
            calibration_data=calibration, progress=progress, seed=args.seed, experiment=experiment,
            cache_dir=args.cache_dir if experiment is None or args.cache_dir != CACHE_DIR else None,
            ray=None if args.ray is None else (True if args.ray == "local" else args.ray))
    except ConfigError as exc:
        raise SystemExit(f"torchslim compress: {exc}") from None
    if mnist:
        from torchslim.utils.training import evaluate_accuracy

        result.extra["test_accuracy"] = {"dense": evaluate_accuracy(model, test),
                                         "compressed": evaluate_accuracy(result.model, test)}
    out = result.save(args.out or (experiment.folder / "result" if experiment is not None else "torchslim-compress"))
    print(result.summary())
    if mnist:
        acc = result.extra["test_accuracy"]
        print(f"\ntest accuracy (touched once): dense {acc['dense']:.2f}% → compressed {acc['compressed']:.2f}%")
    print(f"\nsaved to {out}/ (model.pt: torchslim.speedup.load(path, model=<fresh model>); report.md, report.json, report.png)")
    return 0 if result.met else 1


def _model(spec: str) -> tuple["torch.nn.Module", tuple[int, ...]]:
    import importlib

    from torchslim.models import LeNet, LeNet5

    if spec in MNIST_MODELS:
        return (LeNet() if spec == "lenet" else LeNet5()), (1, 1, 28, 28)
    if spec.startswith("torchvision:"):
        import torchvision

        return torchvision.models.get_model(spec.split(":", 1)[1], weights=None), (1, 3, 224, 224)
    module, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit(f"torchslim compress: --model {spec!r}: use lenet, lenet5, torchvision:NAME or module:factory")
    factory = getattr(importlib.import_module(module), attr)
    return factory(), (1, 1, 28, 28)


def _say(progress: bool, line: str) -> None:
    if progress:
        print(f"[torchslim compress] {line}", flush=True)
