"""ResNet for 32x32 images, as in kuangliu/pytorch-cifar models/resnet.py.

A 3x3 stem with 64 channels and no max-pool, four stages of BasicBlocks (64, 128, 256, 512 channels,
strides 1, 2, 2, 2), global average pooling and one linear layer. ResNet18 has 11,173,962 parameters
for 10 classes. Global average pooling is written as adaptive pooling: on the 4x4 map of a 32x32 input
it is exactly kuangliu's `F.avg_pool2d(out, 4)`.

Variants, none of which changes a parameter count: the normalisation layer (`norm_layer`), dropout
after each normalisation inside a block (`dropout`), and zero-initialised residual branches
(`zero_init_residual`: each block's last normalisation scale starts at 0). `stages=3` keeps only the first three stages
(64, 128, 256 channels): an 8x8 last feature map and a 256 -> classes linear layer.
"""

import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, norm_layer=nn.BatchNorm2d, dropout=0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                norm_layer(planes),
            )

    def zero_init_last(self):
        """Start the residual branch at zero (its last normalisation's scale), so the block begins as
        its shortcut: deep ResNets then train like shallow ones in the first steps."""
        if getattr(self.bn2, "weight", None) is not None:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x):
        out = F.relu(self.drop(self.bn1(self.conv1(x))))
        out = self.drop(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, norm_layer=nn.BatchNorm2d, dropout=0.0, stages=4,
                 zero_init_residual=False):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(64)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        widths, strides = (64, 128, 256, 512)[:stages], (1, 2, 2, 2)[:stages]
        for i, (planes, stride) in enumerate(zip(widths, strides), 1):
            setattr(self, f"layer{i}", self._make_layer(block, planes, num_blocks[i - 1], stride, norm_layer, dropout))
        self.stages = stages
        self.linear = nn.Linear(widths[-1] * block.expansion, num_classes)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    module.zero_init_last()

    def _make_layer(self, block, planes, num_blocks, stride, norm_layer, dropout):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, s, norm_layer, dropout))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.drop(self.bn1(self.conv1(x))))
        for i in range(1, self.stages + 1):
            out = getattr(self, f"layer{i}")(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet18(num_classes=10, **kwargs):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, **kwargs)


def resnet34(num_classes=10, **kwargs):
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, **kwargs)
