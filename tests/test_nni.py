"""torchslim.trace: NNI's nni.trace(cls) is not needed; it returns its argument with a warning."""
from __future__ import annotations

import pytest
import torch

import torchslim


def test_trace_returns_the_class_and_warns():
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.warns(DeprecationWarning, match=r"^nni\.trace\(Adam\) is an NNI legacy form; use Adam\(\.\.\.\) directly"):
        optimizer = torchslim.trace(torch.optim.Adam)(params, lr=0.1)
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["lr"] == 0.1
