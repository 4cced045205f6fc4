"""The training script of pytorch/examples' mnist/main.py pasted into a notebook, as most training scripts are:
its argparse options parsed from a list instead of the command line (`args`, an argparse.Namespace global),
`train()` and `test()` as in the example (`test` with `@torch.no_grad()` instead of the `with` block),
Adadelta with StepLR. `fl_train_model` and `fl_evaluate_model` read the site's `manifest.ndjson` with `open()`
and its images with PIL as 28x28 grayscale, normalized with MNIST's mean and deviation.

Source: https://github.com/pytorch/examples/blob/main/mnist/main.py
"""
# %%
import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from PIL import Image
from torch.optim.lr_scheduler import StepLR

# %%
parser = argparse.ArgumentParser(description="PyTorch MNIST Example")
parser.add_argument("--batch-size", type=int, default=64, metavar="N",
                    help="input batch size for training (default: 64)")
parser.add_argument("--test-batch-size", type=int, default=1000, metavar="N",
                    help="input batch size for testing (default: 1000)")
parser.add_argument("--epochs", type=int, default=14, metavar="N", help="number of epochs to train (default: 14)")
parser.add_argument("--lr", type=float, default=1.0, metavar="LR", help="learning rate (default: 1.0)")
parser.add_argument("--gamma", type=float, default=0.7, metavar="M", help="Learning rate step gamma (default: 0.7)")
parser.add_argument("--no-accel", action="store_true", help="disables accelerator")
parser.add_argument("--dry-run", action="store_true", help="quickly check a single pass")
parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default: 1)")
parser.add_argument("--log-interval", type=int, default=10, metavar="N",
                    help="how many batches to wait before logging training status")
args = parser.parse_args(["--batch-size", "8", "--epochs", "1", "--lr", "0.5"])  # no command line in a notebook

# %%
def read_site_images(data_path, size=28):
    """The shard's images as normalized 1x28x28 tensors and their labels, listed by manifest.ndjson."""
    images, labels = [], []
    with open(os.path.join(data_path, "manifest.ndjson"), encoding="utf-8") as manifest:
        for line in manifest:
            row = json.loads(line)
            with Image.open(os.path.join(data_path, row["uri"].removeprefix("file://"))) as img:
                pixels = np.asarray(img.convert("L").resize((size, size)), dtype=np.float32) / 255.0
            images.append((torch.from_numpy(pixels).unsqueeze(0) - 0.1307) / 0.3081)
            labels.append(row["y"][0])
    return torch.stack(images), torch.tensor(labels)


def train(args, model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print("Train Epoch: {} [{}/{}]\tLoss: {:.6f}".format(
                epoch, batch_idx * len(data), len(train_loader.dataset), loss.item()))
            if args.dry_run:
                break
    return loss.item()


@torch.no_grad()
def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    for data, target in test_loader:
        data, target = data.to(device), target.to(device)
        output = model(data)
        test_loss += F.nll_loss(output, target, reduction="sum").item()  # sum up batch loss
        pred = output.argmax(dim=1, keepdim=True)  # get the index of the max log-probability
        correct += pred.eq(target.view_as(pred)).sum().item()
    n = len(test_loader.dataset)
    return test_loss / n, correct / n

# %% fl_model --input-shape 2,1,28,28
class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def fl_train_model(payload):
    torch.manual_seed(args.seed + payload["round"])
    device = torch.device(payload["device"])
    model = Net().to(device)
    model.load_state_dict(payload["initial_weights"])
    images, labels = read_site_images(payload["data_path"])
    dataset = torch.utils.data.TensorDataset(images, labels)
    train_loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    for epoch in range(1, args.epochs + 1):
        loss = train(args, model, device, train_loader, optimizer, epoch)
        scheduler.step()
    weights = {k: v.cpu() for k, v in model.state_dict().items()}
    return {"weights": weights, "samples": len(dataset), "metrics": {"loss": loss}}


def fl_evaluate_model(payload):
    model = Net()
    model.load_state_dict(payload["weights"])
    images, labels = read_site_images(payload["data_path"])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels),
                                         batch_size=args.test_batch_size)
    loss, accuracy = test(model, torch.device("cpu"), loader)
    return {"metrics": {"loss": loss, "accuracy": accuracy}, "samples": len(labels)}
