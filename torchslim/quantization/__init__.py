"""Quantization: fake-quant training / calibration with hooks, calibration config, real int8 models.

Quantizers (``QATQuantizer``, ``PtqQuantizer``, ``LsqQuantizer``, ``NaiveQuantizer``,
``DoReFaQuantizer``, ``BNNQuantizer``) attach fake quantization to a model in place and
return NNI's calibration config; :func:`deploy` turns model + calibration config into a
model running int8 kernels (PyTorch x86 / fbgemm, or onnxruntime QDQ).
"""
from torchslim.quantization.base import CalibrationConfig, Quantizer
from torchslim.quantization.nni import ALIASES
from torchslim.utils.legacy import deprecated_aliases
from torchslim.quantization.config import DEFAULT_QUANT_TYPES, QuantDtype, TargetSpec
from torchslim.quantization.int8 import calibration_of, deploy
from torchslim.quantization.fake_quant import QuantGrad, QuantType, StraightThrough
from torchslim.quantization.observers import EMAObserver, MSEObserver, Observer, PercentileObserver, qparams
from torchslim.quantization.quantizers import (
    BNNQuantizer, DoReFaQuantizer, LsqQuantizer, NaiveQuantizer, PtqQuantizer, QATQuantizer,
)


def demo_rows(*args, **kwargs):
    """See :func:`torchslim.quantization.demo.demo_rows` (the demo's PTQ / QAT → int8 rows)."""
    from torchslim.quantization.demo import demo_rows as _demo_rows

    return _demo_rows(*args, **kwargs)


__all__ = [
    "BNNQuantizer", "CalibrationConfig", "DEFAULT_QUANT_TYPES", "DoReFaQuantizer", "EMAObserver", "LsqQuantizer",
    "MSEObserver", "NaiveQuantizer", "Observer", "PercentileObserver", "PtqQuantizer", "QATQuantizer", "QuantDtype",
    "QuantGrad", "QuantType", "Quantizer", "StraightThrough", "TargetSpec", "calibration_of", "demo_rows", "deploy", "qparams",
]

__getattr__ = deprecated_aliases(ALIASES, __name__)  # NNI's old names: they warn on every access
