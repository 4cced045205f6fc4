"""CharRNN from the PyTorch "NLP From Scratch: Classifying Names with a Character-Level RNN" tutorial:
the alphabet from the string module, sizes derived from it in other cells.

Source: https://pytorch.org/tutorials/intermediate/char_rnn_classification_tutorial.html
"""
# %%
import string

import torch
import torch.nn as nn
import torch.nn.functional as F

# %%
allowed_characters = string.ascii_letters + " .,;'" + "_"
n_letters = len(allowed_characters)
alldata_labels_uniq = ["Arabic", "Chinese", "Czech", "Dutch", "English", "French"]
n_hidden = 32

# %% fl_model --input-shape 5,1,58
class CharRNN(nn.Module):
    def __init__(self, input_size=n_letters, hidden_size=n_hidden, output_size=len(alldata_labels_uniq)):
        super(CharRNN, self).__init__()
        self.rnn = nn.RNN(input_size, hidden_size)
        self.h2o = nn.Linear(hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, line_tensor):
        rnn_out, hidden = self.rnn(line_tensor)
        output = self.h2o(hidden[0])
        output = self.softmax(output)
        return output
