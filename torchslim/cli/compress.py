"""``torchslim compress``: a model and a budget in, a verified, smaller, faster model out."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports torch only when a command runs
    import torch

MNIST_MODELS = ("lenet", "lenet5")


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
    parser.add_argument("--cache-dir", default=".torchslim-cache", help="latency/sensitivity cache (default: %(default)s)")
    parser.add_argument("--out", default="torchslim-compress", help="output directory (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
        if args.weights:
            model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        else:
            _say(progress, f"training the dense {args.model} for {args.epochs} epochs on {len(fit)} images")
            train_epochs(model, fit, args.epochs, lr=2e-3, seed=args.seed, progress=progress, desc="dense")
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
            algorithm_options={"tuner_name": args.tuner, "trials": args.trials} if args.algorithm == "tuner" else None,
            proxy=args.proxy, short_term_fn=short_term_fn, pruner=args.pruner, exclude=args.exclude, max_sparsity=args.max_sparsity,
            latency_input=torch.randn(args.batch, *shape[1:]), threads=args.threads, quantize=args.int8,
            calibration_data=calibration, cache_dir=args.cache_dir, progress=progress, seed=args.seed)
    except ConfigError as exc:
        raise SystemExit(f"torchslim compress: {exc}") from None
    if mnist:
        from torchslim.utils.training import evaluate_accuracy

        result.extra["test_accuracy"] = {"dense": evaluate_accuracy(model, test),
                                         "compressed": evaluate_accuracy(result.model, test)}
    out = result.save(args.out)
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
