"""What the compressor families share: the chain protocol (``from_compressor``, one ``compress()``
for the whole chain, ``unwrap_model()`` on the last unwraps all), the result pair, granularity."""
from torchslim.compression.base import CompressResult, Compressor, is_evaluator, shares_training

__all__ = ["CompressResult", "Compressor", "is_evaluator", "shares_training"]
