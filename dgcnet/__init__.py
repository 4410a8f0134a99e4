"""DGCNet, the Dual Graph Convolutional Network for semantic segmentation, in PyTorch."""
from dgcnet.engine.predict import predict
from dgcnet.formats.load import load_model
from dgcnet.models import build_model, list_models

__version__ = "0.1.0"

__all__ = ["__version__", "build_model", "list_models", "load_model", "predict"]
