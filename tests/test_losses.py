"""The loss against a direct float64 numpy computation of DESIGN.md section 3."""
import numpy as np
import pytest
import torch

from dgcnet.losses import cross_entropy, dgcnet_loss, ohem_cross_entropy

IGNORE = 255


def reference_image_losses(logits, target, thresh, min_kept, strict=False):
    """Per-image OHEM CE written from the text: p of the true class (ignored = 1); fewer than
    min_kept labelled pixels -> plain CE; threshold = max(thresh, min_kept-th smallest p);
    keep labelled pixels with p <= threshold (p < threshold with strict); mean CE over them."""
    losses = []
    for z, t in zip(np.asarray(logits, np.float64), np.asarray(target)):
        z = z.reshape(z.shape[0], -1)
        t = t.reshape(-1)
        z = z - z.max(axis=0, keepdims=True)
        log_prob = z - np.log(np.exp(z).sum(axis=0, keepdims=True))
        valid = t != IGNORE
        pixels = np.arange(t.size)
        true_log_prob = log_prob[np.where(valid, t, 0), pixels]
        p = np.where(valid, np.exp(true_log_prob), 1.0)
        if valid.sum() < min_kept:
            kept = valid
        else:
            threshold = thresh
            if min_kept > 0:
                threshold = max(thresh, np.sort(p)[min_kept - 1])
            kept = valid & ((p < threshold) if strict else (p <= threshold))
        losses.append(-true_log_prob[kept].mean() if kept.any() else 0.0)
    return np.array(losses)


def random_case(seed, batch=2, classes=5, size=(12, 10), ignore_fraction=0.2, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, classes, *size)) * scale
    target = rng.integers(0, classes, size=(batch, *size))
    target[rng.random(target.shape) < ignore_fraction] = IGNORE
    return logits, target


@pytest.mark.parametrize("min_kept", [0, 10, 60, 95])
def test_ohem_matches_float64_reference(min_kept):
    logits, target = random_case(0)
    expected = reference_image_losses(logits, target, 0.7, min_kept).mean()
    got64 = ohem_cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), 0.7, min_kept)
    assert got64.dtype == torch.float64
    assert got64.item() == pytest.approx(expected, rel=1e-12)
    got32 = ohem_cross_entropy(torch.from_numpy(logits).float(), torch.from_numpy(target), 0.7, min_kept)
    assert got32.item() == pytest.approx(expected, rel=1e-5)


def test_threshold_rises_above_thresh_when_min_kept_needs_it():
    # Confident logits: most p > 0.7, so the min_kept-th smallest p is the threshold.
    logits, target = random_case(1, batch=1, classes=3)
    logits[0, target[0].clip(0, 2), np.arange(12)[:, None], np.arange(10)[None, :]] += 6.0
    p_loss_thresh_only = reference_image_losses(logits, target, 0.7, 0).mean()
    expected = reference_image_losses(logits, target, 0.7, 80).mean()
    assert expected != pytest.approx(p_loss_thresh_only)  # the case really exercises the k-th value
    got = ohem_cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), 0.7, 80)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_ties_at_the_threshold_are_all_kept():
    # 40 pixels share one logit vector (identical p), 20 more are easier; with min_kept 30 the
    # 30th smallest p falls inside the tied group, and '<=' keeps all 40 of them.
    classes, n = 4, 60
    logits = np.zeros((1, classes, 1, n))
    logits[0, 0, 0, :40] = 2.0  # p(class 0) = e^2 / (e^2 + 3) ~= 0.711 > 0.7
    logits[0, 0, 0, 40:] = 5.0
    target = np.zeros((1, 1, n), dtype=np.int64)
    logits[0, 1, 0, :5] = 0.5
    logits[0, :, 0, :5] = logits[0, :, 0, 5:6]  # keep the group exactly tied
    expected = reference_image_losses(logits, target, 0.7, 30).mean()
    strict = reference_image_losses(logits, target, 0.7, 30, strict=True).mean()
    assert expected != pytest.approx(strict)  # '<' would keep nothing of the tie
    for dtype in (torch.float64, torch.float32):
        got = ohem_cross_entropy(torch.from_numpy(logits).to(dtype), torch.from_numpy(target), 0.7, 30)
        assert got.item() == pytest.approx(expected, rel=1e-6)


def test_fewer_valid_pixels_than_min_kept_falls_back_to_plain_ce():
    logits, target = random_case(2, batch=1, ignore_fraction=0.5)
    n_valid = int((target != IGNORE).sum())
    got = ohem_cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), 0.7, n_valid + 1)
    plain = reference_image_losses(logits, target, 0.7, 10**9).mean()
    assert got.item() == pytest.approx(plain, rel=1e-12)
    assert got.item() == pytest.approx(cross_entropy(torch.from_numpy(logits), torch.from_numpy(target)).item())
    # With a lower min_kept OHEM drops easy pixels, so the fallback above really was a fallback.
    ohem = ohem_cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), 0.7, n_valid // 2)
    assert ohem.item() == pytest.approx(reference_image_losses(logits, target, 0.7, n_valid // 2).mean(), rel=1e-12)
    assert ohem.item() != pytest.approx(plain)


def test_per_image_semantics_in_a_batch():
    # Image 0 has few labelled pixels (plain CE), image 1 many (OHEM): each decided on its own,
    # and the batch loss is the mean of the two images' losses.
    logits, target = random_case(3, batch=2, ignore_fraction=0.0)
    target[0, :, 3:] = IGNORE
    per_image = reference_image_losses(logits, target, 0.7, 50)
    singles = [ohem_cross_entropy(torch.from_numpy(logits[i:i + 1]), torch.from_numpy(target[i:i + 1]), 0.7, 50).item()
               for i in range(2)]
    assert singles == pytest.approx(list(per_image), rel=1e-12)
    batch = ohem_cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), 0.7, 50)
    assert batch.item() == pytest.approx(per_image.mean(), rel=1e-12)


def test_image_without_labels_adds_zero_and_stays_finite():
    logits, target = random_case(4, batch=2)
    target[1] = IGNORE
    got = ohem_cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), 0.7, 10)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(reference_image_losses(logits[:1], target[:1], 0.7, 10)[0] / 2, rel=1e-12)


def bilinear_align_corners(x, size):
    """(C, h, w) -> (C, H, W), bilinear with corner pixels aligned, in numpy."""
    c, h, w = x.shape
    out_h, out_w = size
    ys = np.arange(out_h) * ((h - 1) / (out_h - 1) if out_h > 1 else 0.0)
    xs = np.arange(out_w) * ((w - 1) / (out_w - 1) if out_w > 1 else 0.0)
    y0 = np.minimum(np.floor(ys).astype(int), h - 1)
    x0 = np.minimum(np.floor(xs).astype(int), w - 1)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = x[:, y0][:, :, x0] * (1 - wx) + x[:, y0][:, :, x1] * wx
    bottom = x[:, y1][:, :, x0] * (1 - wx) + x[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bottom * wy


def test_dgcnet_loss_upsamples_both_outputs_and_weights_aux():
    rng = np.random.default_rng(5)
    main = rng.normal(size=(2, 4, 3, 4)) * 2
    aux = rng.normal(size=(2, 4, 3, 4)) * 2
    target = rng.integers(0, 4, size=(2, 17, 25))
    target[:, :2] = IGNORE
    up_main = np.stack([bilinear_align_corners(m, (17, 25)) for m in main])
    up_aux = np.stack([bilinear_align_corners(a, (17, 25)) for a in aux])
    expected = (reference_image_losses(up_main, target, 0.7, 300).mean()
                + 0.4 * reference_image_losses(up_aux, target, 0.7, 10**9).mean())
    got = dgcnet_loss((torch.from_numpy(main), torch.from_numpy(aux)), torch.from_numpy(target),
                      ohem_thresh=0.7, ohem_min_kept=300, aux_weight=0.4)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    half = dgcnet_loss((torch.from_numpy(main).half(), torch.from_numpy(aux).half()), torch.from_numpy(target),
                       ohem_thresh=0.7, ohem_min_kept=300, aux_weight=0.4)
    assert half.dtype == torch.float32 and half.item() == pytest.approx(expected, rel=1e-2)


def test_gradient_flows_only_through_kept_pixels():
    logits, target = random_case(6, batch=1, ignore_fraction=0.0)
    x = torch.from_numpy(logits).requires_grad_()
    ohem_cross_entropy(x, torch.from_numpy(target), 0.7, 20).backward()
    touched = (x.grad.abs().sum(1) > 0).numpy()[0]
    z = logits[0] - logits[0].max(0)
    p = np.exp(z) / np.exp(z).sum(0)
    p_true = np.take_along_axis(p, target[0][None], 0)[0]
    threshold = max(0.7, np.sort(p_true.ravel())[19])
    assert (touched == (p_true <= threshold)).all()
