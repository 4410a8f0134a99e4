from dgcnet.models.dgcnet import DGCNet
from dgcnet.models.factory import build_model, list_models

__all__ = ["DGCNet", "build_model", "list_models"]
