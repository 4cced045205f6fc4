"""EncoderRNN from the PyTorch "NLP From Scratch: Translation with a Sequence to Sequence Network and
Attention" tutorial (embedding, dropout, batch-first GRU); the vocabulary size comes from a Lang object's
count in an earlier cell.

Source: https://pytorch.org/tutorials/intermediate/seq2seq_translation_tutorial.html
"""
# %%
import torch
import torch.nn as nn

# %%
SOS_token = 0
EOS_token = 1


class Lang:
    def __init__(self, name):
        self.name = name
        self.word2index = {}
        self.word2count = {}
        self.index2word = {0: "SOS", 1: "EOS"}
        self.n_words = 2  # Count SOS and EOS

    def addSentence(self, sentence):
        for word in sentence.split(" "):
            self.addWord(word)

    def addWord(self, word):
        if word not in self.word2index:
            self.word2index[word] = self.n_words
            self.word2count[word] = 1
            self.index2word[self.n_words] = word
            self.n_words += 1
        else:
            self.word2count[word] += 1


input_lang = Lang("fra")
input_lang.addSentence("je suis content de te voir")
INPUT_WORDS = input_lang.n_words
hidden_size = 16

# %% fl_model --input-shape 2,5
class EncoderRNN(nn.Module):
    def __init__(self, input_size=INPUT_WORDS, hidden_size=hidden_size, dropout_p=0.1):
        super(EncoderRNN, self).__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):
        embedded = self.dropout(self.embedding(input.long().clamp(0, self.embedding.num_embeddings - 1)))
        output, hidden = self.gru(embedded)
        return output
