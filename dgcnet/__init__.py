"""DGCNet, the Dual Graph Convolutional Network for semantic segmentation, in PyTorch."""
from dgcnet.config import TrainConfig, load_config
from dgcnet.data.labels import CITYSCAPES
from dgcnet.engine.predict import predict
from dgcnet.engine.train import TrainResult, train
from dgcnet.formats.load import load_model
from dgcnet.models import build_model, list_models

__version__ = "0.1.0"

__all__ = ["__version__", "CITYSCAPES", "TrainConfig", "TrainResult", "build_model", "list_models", "load_config", "load_model",
           "predict", "train"]
