"""RNNModel from pytorch/examples' word_language_model/model.py: an encoder, an LSTM/GRU/RNN chosen by a
string, a decoder with optional weight tying; init_hidden for the training loop.

Source: https://github.com/pytorch/examples/blob/main/word_language_model/model.py; constructor arguments
given defaults from a config cell (FL sites build the model without arguments).
"""
# %%
import torch.nn as nn
import torch.nn.functional as F

# %%
ARGS = {"model": "LSTM", "ntokens": 200, "emsize": 16, "nhid": 16, "nlayers": 2, "dropout": 0.2, "tied": True}

# %% fl_model
class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type=ARGS["model"], ntoken=ARGS["ntokens"], ninp=ARGS["emsize"], nhid=ARGS["nhid"],
                 nlayers=ARGS["nlayers"], dropout=ARGS["dropout"], tie_weights=ARGS["tied"]):
        super(RNNModel, self).__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ["LSTM", "GRU"]:
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            if nhid != ninp:
                raise ValueError("When using the tied flag, nhid must be equal to emsize")
            self.decoder.weight = self.encoder.weight
        self.init_weights()
        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
        return weight.new_zeros(self.nlayers, bsz, self.nhid)
