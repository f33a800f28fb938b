"""``torchslim demo``: the end-to-end pipeline on embedded MNIST."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train, prune, speed up and quantize LeNet on the embedded MNIST data",
        description="Train LeNet on the embedded MNIST split, prune it, fine-tune, speed it up, quantize it "
                    "and print a before/after table (also saved with a per-layer sparsity plot).",
    )
    parser.add_argument("--out", default="torchslim-demo", help="output directory (default: %(default)s)")
    parser.add_argument("--model", default="lenet", choices=["lenet", "lenet5"], help="network (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default: %(default)s)")
    parser.add_argument("--finetune-epochs", type=int, default=2, help="fine-tuning epochs (default: %(default)s)")
    parser.add_argument("--sparsity", type=float, default=0.5, help="share of channels to prune (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="train on 1,000 images only (smoke test)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torchslim.demo import run_demo

    run_demo(args.out, model_name=args.model, epochs=args.epochs, finetune_epochs=args.finetune_epochs,
             sparsity=args.sparsity, quick=args.quick, progress=not args.no_progress)
    return 0
