"""A 3D convolutional network for video clips in the style of C3D (Tran et al., "Learning Spatiotemporal
Features with 3D Convolutional Networks", 2015): Conv3d/MaxPool3d stages, then fully connected layers.

Source: https://github.com/DavideA/c3d-pytorch (C3D_model.py), an implementation of that architecture;
three narrow stages here instead of eight wide ones.
"""
# %%
import torch
import torch.nn as nn

# %%
CLIP = dict(frames=8, size=16)
CHANNELS = (4, 8, 16)

# %% fl_model --input-shape 2,3,8,16,16
class C3D(nn.Module):
    def __init__(self, num_classes=5):
        super(C3D, self).__init__()
        c1, c2, c3 = CHANNELS
        self.conv1 = nn.Conv3d(3, c1, kernel_size=(3, 3, 3), padding=(1, 1, 1))
        self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.conv2 = nn.Conv3d(c1, c2, kernel_size=(3, 3, 3), padding=(1, 1, 1))
        self.pool2 = nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2))
        self.conv3a = nn.Conv3d(c2, c3, kernel_size=(3, 3, 3), padding=(1, 1, 1))
        self.conv3b = nn.Conv3d(c3, c3, kernel_size=(3, 3, 3), padding=(1, 1, 1))
        self.pool3 = nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2))
        flat = c3 * (CLIP["frames"] // 4) * (CLIP["size"] // 8) ** 2
        self.fc6 = nn.Linear(flat, 64)
        self.fc7 = nn.Linear(64, 64)
        self.fc8 = nn.Linear(64, num_classes)
        self.dropout = nn.Dropout(p=0.5)
        self.relu = nn.ReLU()

    def forward(self, x):
        h = self.pool1(self.relu(self.conv1(x)))
        h = self.pool2(self.relu(self.conv2(h)))
        h = self.relu(self.conv3a(h))
        h = self.pool3(self.relu(self.conv3b(h)))
        h = torch.flatten(h, 1)
        h = self.dropout(self.relu(self.fc6(h)))
        h = self.dropout(self.relu(self.fc7(h)))
        return self.fc8(h)
