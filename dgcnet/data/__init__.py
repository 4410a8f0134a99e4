from dgcnet.data.check import CheckResult, check_list
from dgcnet.data.dataset import Sample, SegmentationDataset, check_files_exist, default_workers, read_list
from dgcnet.data.classes import load_class_file
from dgcnet.data.labels import CITYSCAPES, IGNORE_INDEX, ClassInfo
from dgcnet.data.lists import make_lists, write_lists
from dgcnet.data.synth import write_synth

__all__ = ["CITYSCAPES", "IGNORE_INDEX", "CheckResult", "ClassInfo", "Sample", "SegmentationDataset",
           "check_files_exist", "check_list", "default_workers", "load_class_file", "make_lists", "read_list",
           "write_lists", "write_synth"]
