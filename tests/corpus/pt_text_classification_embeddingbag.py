"""TextClassificationModel from the PyTorch "Text classification with the torchtext library" tutorial
(nn.EmbeddingBag + linear layer, weights initialised in init_weights); sizes from constants cells.

Source: https://pytorch.org/tutorials/beginner/text_sentiment_ngrams_tutorial.html
"""
# %%
from torch import nn

# %%
vocab_size = 500  # len(vocab) in the tutorial
emsize = 16
num_class = 4

# %% fl_model
class TextClassificationModel(nn.Module):
    def __init__(self, vocab_size=vocab_size, embed_dim=emsize, num_class=num_class):
        super(TextClassificationModel, self).__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, sparse=False)
        self.fc = nn.Linear(embed_dim, num_class)
        self.init_weights()

    def init_weights(self):
        initrange = 0.5
        self.embedding.weight.data.uniform_(-initrange, initrange)
        self.fc.weight.data.uniform_(-initrange, initrange)
        self.fc.bias.data.zero_()

    def forward(self, text, offsets):
        embedded = self.embedding(text, offsets)
        return self.fc(embedded)
