from dgcnet.models.dgcnet import DGCNet
from dgcnet.models.factory import build_model, list_models
from dgcnet.models.info import ModelInfo, classes_info, default_info

__all__ = ["DGCNet", "ModelInfo", "build_model", "classes_info", "default_info", "list_models"]
