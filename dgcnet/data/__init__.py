from dgcnet.data.cityscapes import Sample, SegmentationDataset, read_list
from dgcnet.data.labels import CITYSCAPES, IGNORE_INDEX, ClassInfo

__all__ = ["CITYSCAPES", "IGNORE_INDEX", "ClassInfo", "Sample", "SegmentationDataset", "read_list"]
