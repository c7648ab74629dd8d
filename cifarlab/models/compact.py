"""Two compact CIFAR networks (under 100,000 parameters) for the "small model" exercise.

Both use depthwise-separable 3x3 convolutions, a dilated convolution, strided convolutions as transitions
instead of max-pooling, and global average pooling before the classifier. `compact` is a plain stack of
ten such layers; `compact_res` spends the same budget on fewer, wider channels with shortcuts, which
trains to a higher accuracy with CutOut 16 (benchmarks/RECIPE.md). `receptive_field` reads a network's
receptive field from its convolutions.
"""

import torch.nn as nn


def conv_bn(in_ch, out_ch, *, stride=1, dilation=1, separable=True, norm_layer=nn.BatchNorm2d, dropout=0.0,
            relu=True):
    """3x3 convolution (depthwise + pointwise when `separable`), normalisation, ReLU (unless `relu` is off)."""
    padding = dilation
    if separable:
        conv = [nn.Conv2d(in_ch, in_ch, 3, stride, padding, dilation, groups=in_ch, bias=False),
                nn.Conv2d(in_ch, out_ch, 1, bias=False)]
    else:
        conv = [nn.Conv2d(in_ch, out_ch, 3, stride, padding, dilation, bias=False)]
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(*conv, norm_layer(out_ch), *drop, *([nn.ReLU(inplace=True)] if relu else []))


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


def receptive_field(model: nn.Module) -> int:
    """Receptive field in input pixels of the last convolution of a network whose convolutions all lie on
    one path, in the order they are declared (shortcuts are identities, with no convolution of their own:
    true of both compact networks, not of a ResNet's strided 1x1 shortcuts)."""
    field, jump = 1, 1
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
        field += (conv.kernel_size[0] - 1) * conv.dilation[0] * jump
        jump *= conv.stride[0]
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


class SeparableBlock(nn.Module):
    """Two depthwise-separable 3x3 convolutions with a shortcut: relu(x + bn(sep(relu(bn(sep(x))))))."""

    def __init__(self, channels, dilation=1, norm_layer=nn.BatchNorm2d, dropout=0.0):
        super().__init__()
        self.first = conv_bn(channels, channels, dilation=dilation, norm_layer=norm_layer, dropout=dropout)
        self.second = conv_bn(channels, channels, norm_layer=norm_layer, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(x + self.second(self.first(x)))


class CompactResNet(nn.Module):
    """A full 3x3 stem at 32x32, then two stages of separable residual blocks: two at 16x16 and one
    dilated at 8x8, each stage entered by a strided separable convolution."""

    def __init__(self, num_classes=10, norm_layer=nn.BatchNorm2d, dropout=0.0, widths=(32, 72, 160)):
        super().__init__()
        c0, c1, c2 = widths
        kw = {"norm_layer": norm_layer, "dropout": dropout}
        self.features = nn.Sequential(
            conv_bn(3, c0, separable=False, **kw),
            conv_bn(c0, c1, stride=2, **kw),
            SeparableBlock(c1, **kw),
            SeparableBlock(c1, **kw),
            conv_bn(c1, c2, stride=2, **kw),
            SeparableBlock(c2, dilation=2, **kw),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(c2, num_classes)

    def forward(self, x):
        return self.linear(self.pool(self.features(x)).flatten(1))


def compact_res(num_classes=10, **kwargs):
    return CompactResNet(num_classes, **kwargs)
