"""The compressor families share ``torchslim.compression``; quantization does not depend on pruning."""
import subprocess
import sys


def test_quantization_does_not_import_pruning():
    code = ("import sys, torchslim.quantization, torchslim.quantization.quantizers; "
            "print(any(m.startswith('torchslim.pruning') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_families_share_the_chain_protocol():
    from torchslim.compression import Compressor
    from torchslim.pruning import AGPPruner, Pruner
    from torchslim.quantization import Quantizer

    for cls in (Pruner, AGPPruner, Quantizer):
        assert issubclass(cls, Compressor)
