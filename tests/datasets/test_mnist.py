"""The embedded MNIST files: the official bytes, a fixed 8,000 / 2,000 split, normalised."""
import hashlib

import pytest
import torch

from torchslim.datasets import load_mnist
from torchslim.datasets.mnist import DATA_DIR, IMAGES, LABELS


def test_shipped_files_are_the_official_ones():
    md5 = {name: hashlib.md5((DATA_DIR / name).read_bytes()).hexdigest() for name in (IMAGES, LABELS)}
    assert md5 == {IMAGES: "9fb629c4189551a2d022fa330f9573f3", LABELS: "ec29112dd5afa0611ce80d1b7f02629c"}


def test_split_shapes_and_normalisation():
    train, test = load_mnist()
    assert len(train) == 8000 and len(test) == 2000
    x, y = train.tensors
    assert x.shape == (8000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    assert sorted(torch.unique(test.tensors[1]).tolist()) == list(range(10))


def test_split_is_fixed_and_disjoint():
    a, b = load_mnist()
    c, _ = load_mnist()
    assert torch.equal(a.tensors[0], c.tensors[0])
    raw_train, raw_test = load_mnist(normalize=False)
    assert raw_train.tensors[0].max() == 1.0 and raw_test.tensors[0].min() == 0.0


def test_bad_split_is_refused():
    with pytest.raises(ValueError, match="train_size"):
        load_mnist(train_size=10_000)
