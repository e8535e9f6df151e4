"""A compact anchor-free oriented detector (CenterNet-style) in plain PyTorch.

Backbone to stride 16 with dilated context, a two-step top-down path back to stride 4, and two
heads: a per-class centre heatmap and 8 regression channels (centre offset x/y, log length,
log width in output cells, sin 2a, cos 2a of the box axis, sin h, cos h of the heading).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

STRIDE = 4
REG_CHANNELS = 8


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class OrientedCenterNet(nn.Module):
    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        c1, c2, c3, c4 = width, width * 2, width * 3, width * 4
        self.num_classes = num_classes
        self.width = width
        self.stem = _cbr(3, c1, 2)  # /2
        self.s4 = nn.Sequential(_cbr(c1, c2, 2), _cbr(c2, c2))  # /4
        self.s8 = nn.Sequential(_cbr(c2, c3, 2), _cbr(c3, c3))  # /8
        self.s16 = nn.Sequential(_cbr(c3, c4, 2), _cbr(c4, c4, dilation=2), _cbr(c4, c4, dilation=4))
        self.lat8 = nn.Conv2d(c3, c4, 1)
        self.fuse8 = _cbr(c4, c3)
        self.lat4 = nn.Conv2d(c2, c3, 1)
        self.fuse4 = _cbr(c3, c2)
        self.head = _cbr(c2, c2)
        self.hm = nn.Conv2d(c2, num_classes, 1)
        self.reg = nn.Conv2d(c2, REG_CHANNELS, 1)
        nn.init.constant_(self.hm.bias, -2.19)  # prior 0.1, as in CenterNet

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f4 = self.s4(self.stem(x))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        p8 = self.fuse8(self.lat8(f8) + F.interpolate(f16, scale_factor=2.0, mode="nearest"))
        p4 = self.fuse4(self.lat4(f4) + F.interpolate(p8, scale_factor=2.0, mode="nearest"))
        h = self.head(p4)
        return self.hm(h), self.reg(h)


class ExportWrapper(nn.Module):
    """What the ONNX file computes: sigmoid heatmap, the class-max peak map (3x3 NMS), regressions."""

    def __init__(self, net: OrientedCenterNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, reg = self.net(images)
        hm = torch.sigmoid(logits)
        top = hm.max(dim=1, keepdim=True).values
        keep = (F.max_pool2d(top, 3, stride=1, padding=1) == top).to(top.dtype)
        return hm, top * keep, reg
