"""The official MNIST test set (10,000 images) shipped inside the package.

The training set is not shipped; a fixed split of these 10,000 images serves as
train (first 8,000) and test (last 2,000).
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

DATA_DIR = Path(__file__).parent / "data"
IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _read_idx(path: Path, magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    header = np.frombuffer(data, dtype=">i4", count=2)
    if header[0] != magic:
        raise ValueError(f"{path} is not an IDX file with magic {magic} (got {header[0]})")
    if magic == 2051:
        n, rows, cols = np.frombuffer(data, dtype=">i4", count=3, offset=4)
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(data, dtype=np.uint8, offset=8)


@lru_cache(maxsize=2)
def _tensors(root: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = _read_idx(Path(root) / IMAGES, 2051)
    labels = _read_idx(Path(root) / LABELS, 2049)
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def load_mnist(
    root: str | Path | None = None, train_size: int = 8000, normalize: bool = True
) -> tuple[TensorDataset, TensorDataset]:
    """``(train, test)`` datasets of 1x28x28 float images and int64 labels.

    A fixed split of the embedded 10,000 official MNIST test images: the first
    ``train_size`` for training, the rest for evaluation; normalised with MNIST's mean/std.
    """
    x, y = _tensors(str(root or DATA_DIR))
    if not 0 < train_size < len(x):
        raise ValueError(f"train_size must be in (0, {len(x)}), got {train_size}")
    if normalize:
        x = (x - MNIST_MEAN) / MNIST_STD
    return TensorDataset(x[:train_size], y[:train_size]), TensorDataset(x[train_size:], y[train_size:])


def mnist_loaders(batch_size: int = 64, test_batch_size: int = 500, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """Shuffled train loader and ordered test loader over :func:`load_mnist`."""
    train, test = load_mnist()
    generator = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator),
        DataLoader(test, batch_size=test_batch_size),
    )
