"""A torchvision-style MobileNetV2: _make_divisible, Conv2dNormActivation-like helper with the norm layer
and activation passed as classes or functools.partial, InvertedResidual blocks from a settings table.

Source: https://github.com/pytorch/vision/blob/main/torchvision/models/mobilenetv2.py (structure and names);
width_mult 0.25 and a short settings table here.
"""
# %%
from functools import partial
from typing import Callable, List, Optional

import torch
from torch import nn, Tensor

# %%
def _make_divisible(v: float, divisor: int, min_value: Optional[int] = None) -> int:
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # make sure that round down does not go down by more than 10%
        new_v += divisor
    return new_v


def conv_norm_act(in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                  norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
                  activation_layer: Callable[..., nn.Module] = nn.ReLU6) -> nn.Sequential:
    padding = (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False),
        norm_layer(out_planes),
        activation_layer(inplace=True),
    )

# %%
class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        super().__init__()
        self.stride = stride
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = self.stride == 1 and inp == oup
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_norm_act(inp, hidden_dim, kernel_size=1, norm_layer=norm_layer))
        layers.extend([
            conv_norm_act(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, norm_layer=norm_layer),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ])
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)

# %%
inverted_residual_setting = [
    # t, c, n, s
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 1, 2],
]
norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)

# %% fl_model --input-shape 2,3,32,32
class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, width_mult: float = 0.25, round_nearest: int = 8,
                 norm_layer: Optional[Callable[..., nn.Module]] = norm_layer, dropout: float = 0.2) -> None:
        super().__init__()
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(128 * max(1.0, width_mult), round_nearest)
        features: List[nn.Module] = [conv_norm_act(3, input_channel, stride=2, norm_layer=norm_layer)]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(InvertedResidual(input_channel, output_channel, stride, expand_ratio=t,
                                                 norm_layer=norm_layer))
                input_channel = output_channel
        features.append(conv_norm_act(input_channel, self.last_channel, kernel_size=1, norm_layer=norm_layer))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)
