"""The recipe's loss: OHEM cross-entropy on the main output + 0.4 x cross-entropy on the auxiliary one.

Both terms are computed per image and averaged over the images of the batch, so the loss (and
its gradient) does not depend on how a global batch is split over processes: one process with
batch 2 trains exactly like two processes with batch 1, whose gradients DDP averages.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dgcnet.data.labels import IGNORE_INDEX


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Losses are computed in float32 (or float64) even when the model ran in half precision."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _true_class_log_prob(logits: torch.Tensor, target: torch.Tensor, ignore_index: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(true class) per pixel, flattened to (B, N), and the mask of labelled pixels."""
    logits = _upcast(logits)
    valid = (target != ignore_index).flatten(1)
    safe_target = target.flatten(1).masked_fill(~valid, 0)
    log_prob = F.log_softmax(logits.flatten(2), dim=1)
    return log_prob.gather(1, safe_target[:, None]).squeeze(1), valid


def _mean_per_image(nll: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Mean of each image's kept pixels, then over images; an image without kept pixels adds 0."""
    per_image = (nll * kept).sum(1) / kept.sum(1).clamp(min=1)
    return per_image.mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy over the labelled pixels of each image, averaged over images.

    ``logits`` (B, C, H, W) at the label size, ``target`` (B, H, W).
    """
    true_log_prob, valid = _true_class_log_prob(logits, target, ignore_index)
    return _mean_per_image(-true_log_prob, valid)


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, thresh: float = 0.7, min_kept: int = 100000,
                       ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Online hard example mining cross-entropy, per image.

    p = softmax probability of the true class (ignored pixels count as 1). An image with fewer
    than ``min_kept`` labelled pixels gets plain cross-entropy. Otherwise the threshold is
    max(``thresh``, the ``min_kept``-th smallest p) and the labelled pixels with p <= threshold
    are kept; the image's loss is the mean cross-entropy over them.
    """
    true_log_prob, valid = _true_class_log_prob(logits, target, ignore_index)
    with torch.no_grad():
        prob = true_log_prob.exp().masked_fill(~valid, 1.0)
        threshold = torch.full_like(prob[:, 0], thresh)
        if min_kept > 0:
            kth_smallest = prob.kthvalue(min(min_kept, prob.shape[1]), dim=1).values
            threshold = torch.maximum(threshold, kth_smallest)
        use_ohem = valid.sum(1) >= min_kept
        kept = valid & ((prob <= threshold[:, None]) | ~use_ohem[:, None])
    return _mean_per_image(-true_log_prob, kept)


def dgcnet_loss_terms(outputs: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor, *, ohem_thresh: float = 0.7,
                      ohem_min_kept: int = 100000) -> tuple[torch.Tensor, torch.Tensor]:
    """(OHEM CE on the main logits, CE on the auxiliary logits), both first upsampled bilinearly
    (align_corners=True) from stride 8 to the label size."""
    logits, aux_logits = outputs
    size = target.shape[-2:]
    logits = F.interpolate(_upcast(logits), size=size, mode="bilinear", align_corners=True)
    aux_logits = F.interpolate(_upcast(aux_logits), size=size, mode="bilinear", align_corners=True)
    return ohem_cross_entropy(logits, target, ohem_thresh, ohem_min_kept), cross_entropy(aux_logits, target)


def dgcnet_loss(outputs: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor, *, ohem_thresh: float = 0.7,
                ohem_min_kept: int = 100000, aux_weight: float = 0.4) -> torch.Tensor:
    """OHEM CE on the main logits + ``aux_weight`` x CE on the auxiliary logits (see
    :func:`dgcnet_loss_terms`)."""
    main, aux = dgcnet_loss_terms(outputs, target, ohem_thresh=ohem_thresh, ohem_min_kept=ohem_min_kept)
    return main + aux_weight * aux
