"""NeuralNetwork from the PyTorch "Learn the Basics: Build the Neural Network" tutorial (FashionMNIST MLP).

Source: https://pytorch.org/tutorials/beginner/basics/buildmodel_tutorial.html
"""
# %%
import torch
from torch import nn

# %%
device = torch.accelerator.current_accelerator().type if torch.accelerator.is_available() else "cpu"

# %% fl_model --input-shape 2,1,28,28
class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits
