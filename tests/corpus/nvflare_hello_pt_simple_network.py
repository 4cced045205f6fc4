"""SimpleNetwork from NVFlare's hello-pt example (CIFAR-10 CNN used by the hello-world jobs).

Source: https://github.com/NVIDIA/NVFlare/tree/main/examples/hello-world/hello-pt (model.py)
"""
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

# %% fl_model --input-shape 2,3,32,32
class SimpleNetwork(nn.Module):
    def __init__(self):
        super(SimpleNetwork, self).__init__()

        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)  # flatten all dimensions except batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x
