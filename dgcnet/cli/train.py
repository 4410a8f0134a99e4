"""`dgcnet train`: train DGCNet from a YAML config, flags and dotted overrides."""
from __future__ import annotations

import argparse
import sys

from dgcnet.config import RESIZE_ON, TrainConfig, config_to_dict, load_config
from dgcnet.models import list_models
from dgcnet.cli.common import CommandAdder, add_dataset_arg, add_device_arg

# The MindSpore port's train.py flags (spelled as there) and ours, with the config key each sets.
FLAG_KEYS = {
    "data_dir": "data.data_dir",
    "data_list": "data.data_list",
    "restore_from": "model.restore_from",
    "input_size": "data.input_size",
    "batch_size": "train.batch_size",
    "rgb": "data.rgb",
    "learning_rate": "train.lr",
    "momentum": "train.momentum",
    "weight_decay": "train.weight_decay",
    "power": "train.poly_power",
    "num_classes": "model.num_classes",
    "num_steps": "train.num_steps",
    "save_dir": "run.save_dir",
    "run_distribute": "run.distributed",
    "ohem_thres": "loss.ohem_thresh",
    "ohem_keep": "loss.ohem_min_kept",
    "arch": "model.arch",
    "save_every": "run.save_every",
    "keep": "run.keep",
    "resume": "run.resume",
    "device": "run.device",
    "workers": "data.workers",
    "seed": "run.seed",
    "log_every": "run.log_every",
    "amp": "train.amp",
    "channels_last": "train.channels_last",
    "compile": "train.compile",
    "val_every": "val.every",
    "val_list": "val.data_list",
    "classes": "data.classes",
    "dataset": "data.dataset",
    "tensorboard": "run.tensorboard",
    "prepared": "data.prepared",
    "resize_on": "data.resize_on",
}


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "train", allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train DGCNet with the published recipe: crop 832, batch 1 per process, SGD lr 0.01\n"
                    "momentum 0.9 wd 5e-4, poly 0.9 per iteration, 60000 iterations, OHEM 0.7 / 100000,\n"
                    "aux weight 0.4. Settings apply in this order: defaults, --config FILE, flags, KEY=VALUE.\n"
                    "Several GPUs or machines: torchrun --nproc_per_node=N -m dgcnet train ...",
        epilog="config keys (KEY=VALUE) and defaults:\n" + "\n".join(
            f"  {section}.{key} = {value}" for section, values in config_to_dict(TrainConfig()).items()
            for key, value in values.items()))
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted config overrides, e.g. train.lr=0.005 data.input_size=769,769")
    p.add_argument("--config", metavar="FILE", help="YAML file holding the settings that differ from the defaults")
    port = p.add_argument_group("flags of the MindSpore port's train.py")
    port.add_argument("--data_dir", metavar="DIR", help="dataset root the list's paths are relative to (data.data_dir)")
    port.add_argument("--data_list", metavar="FILE", help="training list, image<TAB>label per line (data.data_list)")
    port.add_argument("--restore_from", metavar="FILE|URL",
                      help="starting weights: ImageNet deep-stem backbone .pth (fc.* skipped), full DGCNet "
                           "weights, a training checkpoint, a MindSpore .ckpt, a Hugging Face folder or hf://OWNER/NAME, "
                           "or an http(s) URL of one (downloaded once into the torch hub cache; end it with "
                           "#sha256=HEX to pin it) (model.restore_from)")
    port.add_argument("--input_size", metavar="H,W",
                      help="crop size, 832 or 832,832 (data.input_size, default: the dataset's, 832 for Cityscapes)")
    port.add_argument("--batch_size", metavar="N", help="images per process and step (train.batch_size, default 1)")
    port.add_argument("--rgb", metavar="1|0", help="1: RGB ImageNet normalisation, 0: BGR mean subtraction (data.rgb)")
    port.add_argument("--learning_rate", metavar="LR", help="base learning rate (train.lr, default 0.01)")
    port.add_argument("--momentum", metavar="M", help="SGD momentum (train.momentum, default 0.9)")
    port.add_argument("--weight_decay", metavar="WD", help="weight decay (train.weight_decay, default 5e-4)")
    port.add_argument("--power", metavar="P", help="poly decay power (train.poly_power, default 0.9)")
    port.add_argument("--num_classes", metavar="N",
                      help="number of classes (model.num_classes, default: the dataset's, 19 for Cityscapes)")
    port.add_argument("--num_steps", metavar="N", help="training iterations (train.num_steps, default 60000)")
    port.add_argument("--save_dir", metavar="DIR",
                      help="run folder: checkpoints, config.yaml, train.log, metrics.jsonl (run.save_dir, default runs/train)")
    port.add_argument("--run_distribute", metavar="1|0",
                      help="1: require a torchrun launch (run.distributed; default: detect WORLD_SIZE)")
    port.add_argument("--ohem_thres", metavar="P", help="OHEM probability threshold (loss.ohem_thresh, default 0.7)")
    port.add_argument("--ohem_keep", metavar="N", help="OHEM minimum kept pixels (loss.ohem_min_kept, default 100000)")
    ours = p.add_argument_group("other flags")
    ours.add_argument("--arch", choices=list_models(), help="architecture (model.arch, default dgcnet_r101)")
    ours.add_argument("--save-every", dest="save_every", metavar="N",
                      help="checkpoint every N iterations, and at the end (run.save_every, default 2000)")
    ours.add_argument("--keep", metavar="K", help="keep the K newest checkpoints (run.keep, default 3)")
    ours.add_argument("--resume", metavar="PATH|auto",
                      help="continue from a checkpoint; auto: the latest in the run folder, if any (run.resume)")
    add_device_arg(ours, "run.device")
    ours.add_argument("--workers", "--num_workers", dest="workers", metavar="N",
                      help="data loader processes per training process (data.workers; default: this machine's "
                           "CPUs shared by its training processes, one CPU left to each, at most 16)")
    ours.add_argument("--seed", metavar="S", help="random seed; process r uses S + r (run.seed, default 0)")
    ours.add_argument("--log-every", dest="log_every", metavar="N",
                      help="iterations per log line and metrics record (run.log_every, default 10)")
    ours.add_argument("--amp", choices=["off", "bf16", "fp16"],
                      help="mixed precision; fp16 uses a gradient scaler (train.amp, default off)")
    ours.add_argument("--channels-last", dest="channels_last", action="store_const", const=True,
                      help="channels-last memory format (train.channels_last)")
    ours.add_argument("--compile", action="store_const", const=True, help="torch.compile the model and the loss as one graph (train.compile)")
    ours.add_argument("--val-every", dest="val_every", metavar="N",
                      help="validate every N iterations and keep best.pt (val.every, default 0: never)")
    ours.add_argument("--val-list", dest="val_list", metavar="FILE", help="validation list (val.data_list)")
    ours.add_argument("--tensorboard", action="store_const", const=True,
                      help="require TensorBoard events in the run folder (run.tensorboard; default: written when "
                           "tensorboard is installed, pip install 'dgcnet[tensorboard]'; run.tensorboard=false: none)")
    ours.add_argument("--classes", metavar="FILE",
                      help="class file of your own data: names, colours, ignore index, id mapping (data.classes, "
                           "default: the dataset's classes); the number of classes follows from it")
    add_dataset_arg(ours, "cityscapes; data.dataset; it also sets the defaults of model.num_classes, "
                          "data.input_size and the random-scale range data.scale_min..data.scale_max")
    ours.add_argument("--prepared", metavar="DIR|auto|none",
                      help="read decoded arrays from this `dgcnet prepare` store (data.prepared; default auto: "
                           "DATA_DIR/dgcnet-prepared when it exists; none: decode the image files)")
    ours.add_argument("--resize-on", dest="resize_on", choices=RESIZE_ON,
                      help="where training crops are resized and normalised (data.resize_on; default auto: on "
                           "the GPU when training on one, so loader workers only cut the uint8 window each crop "
                           "reads; loader: in the loader workers; the crops are the same either way)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dgcnet.engine.stopping import TrainingStopped
    from dgcnet.engine.train import train

    flags = [(key, getattr(args, name)) for name, key in FLAG_KEYS.items() if getattr(args, name) is not None]
    config = load_config(args.config, flags + list(args.overrides))
    try:
        train(config)
    except TrainingStopped as stopped:  # a clean stop with a checkpoint: the signal's usual status
        print(f"dgcnet train: {stopped}", file=sys.stderr)
        return 128 + stopped.signum
    return 0
