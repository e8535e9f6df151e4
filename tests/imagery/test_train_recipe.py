"""Pieces of the training recipe: class-balanced draws and BN recalibration after a warm start."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from casemate.imagery.datasets import Box, Sample
from casemate.imagery.model.net import OrientedCenterNet
from casemate.imagery.model.train import _image_weights, recalibrate_bn


def _sample(classes: list[int]) -> Sample:
    return Sample(Path("x.png"), [Box(10, 10, 8, 4, 0.0, c) for c in classes])


def test_rare_class_images_are_drawn_more_often() -> None:
    part = [_sample([0, 0])] * 8 + [_sample([0, 1])] * 2 + [_sample([])]
    flat = _image_weights(part, 2, 0.0)
    assert np.allclose(flat, 1.0)
    w = _image_weights(part, 2, 1.0)
    # Class 1 appears in 2 images, class 0 in 10: those 2 images weigh 5x the others.
    assert np.isclose(w[8] / w[0], 5.0) and np.isclose(w[-1], w[0])
    assert np.isclose(w.mean(), 1.0)
    half = _image_weights(part, 2, 0.5)
    assert np.isclose(half[8] / half[0], 5.0**0.5)


def _as_warm_start(net: OrientedCenterNet, seed: int = 0) -> None:
    """What init_from_onnx leaves: BN at the identity (mean 0, var 1 - eps, weight 1) plus a bias."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.zero_()
                m.running_var.fill_(1.0 - m.eps)


def _train_eval_drift(net: OrientedCenterNet, x: torch.Tensor) -> float:
    """Largest difference of the heatmap logits between batch statistics and running statistics
    (on a copy: a training-mode pass moves the running statistics)."""
    probe = copy.deepcopy(net)
    with torch.no_grad():
        train_out = probe.train()(x)[0]
        return float((train_out - net.eval()(x)[0]).abs().max())


def test_bn_recalibration_keeps_the_function_and_makes_training_mode_agree() -> None:
    torch.manual_seed(0)
    net = OrientedCenterNet(2, width=4)
    _as_warm_start(net)
    batches = [torch.rand(4, 3, 64, 64) for _ in range(3)]
    x = torch.rand(2, 3, 64, 64)
    net.eval()
    with torch.no_grad():
        before = net(x)
    drift_before = _train_eval_drift(net, batches[0])
    assert recalibrate_bn(net, batches) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    net.eval()
    with torch.no_grad():
        after = net(x)
        for a, b in zip(before, after, strict=True):
            assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    # Honest statistics now: in training mode (batch statistics) the net computes nearly what it
    # computes in eval mode, where before recalibration the two differed widely.
    drift_after = _train_eval_drift(net, batches[0])
    bn = net.stem[1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var), atol=1e-2)
    assert drift_after < 0.25 * drift_before, (drift_after, drift_before)
