"""ModerateCNN from NVFlare's CIFAR-10 examples (conv blocks of nn.Sequential, dropout, a 3-layer head).

Source: https://github.com/NVIDIA/NVFlare/tree/main/examples/advanced/cifar10 (pt/networks/cifar10_nets.py);
widths divided by 8 here so the test stays small.
"""
# %%
import torch.nn as nn

# %%
WIDTH = 4  # the example uses 32

# %% fl_model --input-shape 2,3,32,32
class ModerateCNN(nn.Module):
    def __init__(self):
        super(ModerateCNN, self).__init__()
        self.conv_layer = nn.Sequential(
            # Conv Layer block 1
            nn.Conv2d(in_channels=3, out_channels=WIDTH, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels=WIDTH, out_channels=2 * WIDTH, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            # Conv Layer block 2
            nn.Conv2d(in_channels=2 * WIDTH, out_channels=4 * WIDTH, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels=4 * WIDTH, out_channels=4 * WIDTH, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Dropout2d(p=0.05),
            # Conv Layer block 3
            nn.Conv2d(in_channels=4 * WIDTH, out_channels=8 * WIDTH, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels=8 * WIDTH, out_channels=8 * WIDTH, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.fc_layer = nn.Sequential(
            nn.Dropout(p=0.1),
            nn.Linear(8 * WIDTH * 4 * 4, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 32),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.1),
            nn.Linear(32, 10),
        )

    def forward(self, x):
        x = self.conv_layer(x)
        x = x.view(x.size(0), -1)
        x = self.fc_layer(x)
        return x
