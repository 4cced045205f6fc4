"""An EfficientNet-style network built on gen-efficientnet's memory-efficient Swish: `@torch.jit.script` forward
and backward functions used by a `torch.autograd.Function` (the sigmoid is recomputed in backward instead of
kept), wrapped in a `SwishMe` module; inverted-residual blocks with squeeze-excitation as in its
efficientnet_blocks.py, channel counts rounded by `make_divisible`. Widths are small so tests stay fast.

Source: https://github.com/rwightman/gen-efficientnet-pytorch/blob/master/geffnet/activations/activations_me.py
(SwishJitAutoFn, SwishMe) and https://github.com/rwightman/gen-efficientnet-pytorch/blob/master/geffnet/efficientnet_blocks.py
(SqueezeExcite, DepthwiseSeparableConv, InvertedResidual)
"""
# %%
import torch
import torch.nn as nn
from torch.nn import functional as F

# %%
@torch.jit.script
def swish_jit_fwd(x):
    return x.mul(torch.sigmoid(x))


@torch.jit.script
def swish_jit_bwd(x, grad_output):
    x_sigmoid = torch.sigmoid(x)
    return grad_output * (x_sigmoid * (1 + x * (1 - x_sigmoid)))


class SwishJitAutoFn(torch.autograd.Function):
    """Swish that saves only its input: the sigmoid is computed again in backward (torch.jit.script'ed)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return swish_jit_fwd(x)

    @staticmethod
    def backward(ctx, grad_output):
        x = ctx.saved_tensors[0]
        return swish_jit_bwd(x, grad_output)


def swish_me(x, inplace=False):
    return SwishJitAutoFn.apply(x)


class SwishMe(nn.Module):
    def __init__(self, inplace: bool = False):
        super(SwishMe, self).__init__()

    def forward(self, x):
        return SwishJitAutoFn.apply(x)

# %%
def make_divisible(v, divisor=8, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # do not round down by more than 10%
        new_v += divisor
    return new_v


class SqueezeExcite(nn.Module):
    def __init__(self, in_chs, se_ratio=0.25, reduced_base_chs=None, act_layer=SwishMe, gate_fn=torch.sigmoid):
        super(SqueezeExcite, self).__init__()
        reduced_chs = make_divisible((reduced_base_chs or in_chs) * se_ratio, 1)
        self.conv_reduce = nn.Conv2d(in_chs, reduced_chs, 1, bias=True)
        self.act1 = act_layer(inplace=True)
        self.conv_expand = nn.Conv2d(reduced_chs, in_chs, 1, bias=True)
        self.gate_fn = gate_fn

    def forward(self, x):
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.conv_expand(self.act1(self.conv_reduce(x_se)))
        return x * self.gate_fn(x_se)


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, in_chs, out_chs, dw_kernel_size=3, stride=1, se_ratio=0.25, act_layer=SwishMe):
        super(DepthwiseSeparableConv, self).__init__()
        self.has_residual = stride == 1 and in_chs == out_chs
        self.conv_dw = nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, dw_kernel_size // 2, groups=in_chs, bias=False)
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.act1 = act_layer(inplace=True)
        self.se = SqueezeExcite(in_chs, se_ratio=se_ratio, act_layer=act_layer)
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)

    def forward(self, x):
        residual = x
        x = self.act1(self.bn1(self.conv_dw(x)))
        x = self.bn2(self.conv_pw(self.se(x)))
        return x + residual if self.has_residual else x


class InvertedResidual(nn.Module):
    def __init__(self, in_chs, out_chs, dw_kernel_size=3, stride=1, exp_ratio=4.0, se_ratio=0.25, act_layer=SwishMe):
        super(InvertedResidual, self).__init__()
        mid_chs = make_divisible(in_chs * exp_ratio)
        self.has_residual = in_chs == out_chs and stride == 1
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_chs)
        self.act1 = act_layer(inplace=True)
        self.conv_dw = nn.Conv2d(
            mid_chs, mid_chs, dw_kernel_size, stride, dw_kernel_size // 2, groups=mid_chs, bias=False
        )
        self.bn2 = nn.BatchNorm2d(mid_chs)
        self.act2 = act_layer(inplace=True)
        self.se = SqueezeExcite(mid_chs, se_ratio=se_ratio, reduced_base_chs=in_chs, act_layer=act_layer)
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)

    def forward(self, x):
        residual = x
        x = self.act1(self.bn1(self.conv_pw(x)))
        x = self.act2(self.bn2(self.conv_dw(x)))
        x = self.bn3(self.conv_pwl(self.se(x)))
        return x + residual if self.has_residual else x

# %%
# (kernel, stride, expansion, output channels) of each inverted-residual stage, as EfficientNet's block args
BLOCK_ARGS = [(3, 2, 4.0, 16), (5, 2, 4.0, 24), (3, 1, 4.0, 24)]
NUM_CLASSES = 10

# %% fl_model --name EfficientNetMini --input-shape 2,3,32,32
class EfficientNetMini(nn.Module):
    def __init__(self, block_args=BLOCK_ARGS, num_classes=NUM_CLASSES, stem_size=16, num_features=64,
                 act_layer=SwishMe, drop_rate=0.2):
        super(EfficientNetMini, self).__init__()
        self.drop_rate = drop_rate
        self.conv_stem = nn.Conv2d(3, stem_size, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_size)
        self.act1 = act_layer(inplace=True)
        blocks = [DepthwiseSeparableConv(stem_size, stem_size // 2, act_layer=act_layer)]
        in_chs = stem_size // 2
        for kernel, stride, exp_ratio, out_chs in block_args:
            blocks.append(InvertedResidual(in_chs, out_chs, kernel, stride, exp_ratio, act_layer=act_layer))
            in_chs = out_chs
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = nn.Conv2d(in_chs, num_features, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(num_features)
        self.act2 = act_layer(inplace=True)
        self.classifier = nn.Linear(num_features, num_classes)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        x = self.act2(self.bn2(self.conv_head(x)))
        x = x.mean((2, 3))
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)
