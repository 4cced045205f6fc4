"""An LSTM text classifier: embedding, bidirectional LSTM, the last hidden states into a linear head, in the
style of the PyTorch "Sequence Models and LSTM Networks" tutorial (LSTMTagger) turned into a classifier as
text-classification notebooks do. The vocabulary is built in an earlier cell.

Source: https://pytorch.org/tutorials/beginner/nlp/sequence_models_tutorial.html; fl_train_model trains on
random token sequences whose label is whether token 1 occurs (no data download).
"""
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

# %%
training_data = [
    ("The dog ate the apple".split(), "animal"),
    ("Everybody read that book".split(), "people"),
]
word_to_ix = {}
for sent, _ in training_data:
    for word in sent:
        if word not in word_to_ix:
            word_to_ix[word] = len(word_to_ix)
VOCAB_SIZE = len(word_to_ix) + 2  # padding and unknown
EMBEDDING_DIM = 16
HIDDEN_DIM = 16
NUM_LABELS = 2

# %% fl_model --input-shape 3,7
class LSTMClassifier(nn.Module):
    def __init__(self, embedding_dim=EMBEDDING_DIM, hidden_dim=HIDDEN_DIM, vocab_size=VOCAB_SIZE,
                 num_labels=NUM_LABELS):
        super(LSTMClassifier, self).__init__()
        self.hidden_dim = hidden_dim
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.hidden2label = nn.Linear(2 * hidden_dim, num_labels)

    def forward(self, sentence):
        embeds = self.word_embeddings(sentence.long().clamp(0, self.word_embeddings.num_embeddings - 1))
        _, (h_n, _) = self.lstm(embeds)
        features = torch.cat([h_n[-2], h_n[-1]], dim=1)
        return F.log_softmax(self.hidden2label(features), dim=1)


def fl_train_model(payload):
    model = LSTMClassifier()
    model.load_state_dict(payload["initial_weights"])
    generator = torch.Generator().manual_seed(1000 + payload["round"])
    tokens = torch.randint(0, VOCAB_SIZE, (16, 7), generator=generator)
    labels = (tokens == 1).any(dim=1).long()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.nll_loss(model(tokens), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"weights": model.state_dict(), "samples": len(tokens), "metrics": {"loss": loss.item()}}
