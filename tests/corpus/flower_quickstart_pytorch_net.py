"""Net from Flower's quickstart-pytorch example (LeNet-style CIFAR-10 model in task.py).

Source: https://github.com/adap/flower/tree/main/examples/quickstart-pytorch (pytorchexample/task.py)
"""
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

# %%
DEVICE = torch.device("cpu")

# %% fl_model --input-shape 2,3,32,32
class Net(nn.Module):
    """Model (simple CNN adapted from 'PyTorch: A 60 Minute Blitz')"""

    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x.to(DEVICE))))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
