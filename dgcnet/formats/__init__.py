"""Weight formats: the authors' .pth, our training checkpoints and released safetensors,
MindSpore .ckpt (pure Python), ONNX export."""
from dgcnet.formats.convert import Report, Weights, convert, read_weights
from dgcnet.formats.load import load_model

__all__ = ["Report", "Weights", "convert", "load_model", "read_weights"]
