"""A compact CIFAR network (under 100,000 parameters) for the "small model" exercise.

Depthwise-separable 3x3 convolutions throughout, one dilated convolution, strided convolutions as
transitions instead of max-pooling, and global average pooling before the classifier. Its receptive
field is computed from the layer list by `receptive_field`.
"""

import torch.nn as nn


def conv_bn(in_ch, out_ch, *, stride=1, dilation=1, separable=True, norm_layer=nn.BatchNorm2d, dropout=0.0):
    """3x3 convolution (depthwise + pointwise when `separable`), normalisation, ReLU."""
    padding = dilation
    if separable:
        conv = [nn.Conv2d(in_ch, in_ch, 3, stride, padding, dilation, groups=in_ch, bias=False),
                nn.Conv2d(in_ch, out_ch, 1, bias=False)]
    else:
        conv = [nn.Conv2d(in_ch, out_ch, 3, stride, padding, dilation, bias=False)]
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(*conv, norm_layer(out_ch), *drop, nn.ReLU(inplace=True))


# (out channels, stride, dilation, separable) for each 3x3 layer, in order.
LAYERS = [
    (24, 1, 1, False),
    (32, 1, 1, True),
    (48, 2, 1, True),    # transition 32x32 -> 16x16
    (48, 1, 1, True),
    (64, 1, 2, True),    # dilated: wider view at no cost in parameters
    (96, 2, 1, True),    # transition 16x16 -> 8x8
    (96, 1, 1, True),
    (128, 1, 1, True),
    (160, 2, 1, True),   # transition 8x8 -> 4x4
    (192, 1, 1, True),
]


def receptive_field(layers=LAYERS) -> int:
    """Receptive field in input pixels of the last convolution."""
    field, jump = 1, 1
    for _, stride, dilation, _ in layers:
        field += 2 * dilation * jump
        jump *= stride
    return field


class CompactNet(nn.Module):
    def __init__(self, num_classes=10, norm_layer=nn.BatchNorm2d, dropout=0.0):
        super().__init__()
        blocks, in_ch = [], 3
        for out_ch, stride, dilation, separable in LAYERS:
            blocks.append(conv_bn(in_ch, out_ch, stride=stride, dilation=dilation, separable=separable,
                                  norm_layer=norm_layer, dropout=dropout))
            in_ch = out_ch
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_ch, num_classes)

    def forward(self, x):
        return self.linear(self.pool(self.features(x)).flatten(1))


def compact(num_classes=10, **kwargs):
    return CompactNet(num_classes, **kwargs)
