"""IncomeClassifier from Flower's fl-tabular example (an MLP on the Adult census features).

Source: https://github.com/adap/flower/tree/main/examples/fl-tabular (fltabular/task.py)
"""
# %%
import torch
import torch.nn as nn

# %%
NUM_FEATURES = 14

# %% fl_model --input-shape 5,14
class IncomeClassifier(nn.Module):
    def __init__(self, input_dim: int = NUM_FEATURES):
        super(IncomeClassifier, self).__init__()
        self.layer1 = nn.Linear(input_dim, 128)
        self.layer2 = nn.Linear(128, 64)
        self.output = nn.Linear(64, 1)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        x = self.relu(self.layer1(x))
        x = self.relu(self.layer2(x))
        x = self.sigmoid(self.output(x))
        return x
