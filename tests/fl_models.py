"""Models with known arithmetic, used by the tests that run NVFlare for real."""

import time

import torch
import torch.nn as nn

SAMPLES = {"site-1": 10, "site-2": 20, "site-3": 50}


class DeltaNet(nn.Module):
    """Weights start at known values; every site adds its own delta each round."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))
        self.b = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return x @ self.w + self.b


def expected_after(rounds: int, samples: dict[str, int], failed: dict[int, set[str]] | None = None) -> dict:
    failed = failed or {}
    state = {k: v.double() for k, v in DeltaNet().state_dict().items()}
    for r in range(rounds):
        sites = {s: n for s, n in samples.items() if s not in failed.get(r, set())}
        delta = sum(n * int(s.rsplit("-", 1)[1]) for s, n in sites.items()) / sum(sites.values())
        state = {k: v + delta for k, v in state.items()}
    return state


def delta_train(payload):
    """site-k adds k to every weight and reports a sample count that differs per site."""
    site = payload["site_name"]
    k = int(site.rsplit("-", 1)[1])
    weights = {name: t + float(k) for name, t in payload["initial_weights"].items()}
    return {"weights": weights, "samples": SAMPLES[site], "metrics": {"loss": float(k)}}


def flaky_train(payload):
    """Like delta_train, but site-2 fails its second round."""
    if payload["site_name"] == "site-2" and payload["round"] == 1:
        raise RuntimeError("disk full on site-2")
    site = payload["site_name"]
    k = int(site.rsplit("-", 1)[1])
    weights = {name: t + float(k) for name, t in payload["initial_weights"].items()}
    return {"weights": weights, "samples": SAMPLES[site], "metrics": {"loss": float(k)}}


def slow_train(payload):
    """Takes a while per round, so a test can abort the job mid-run."""
    time.sleep(2)
    weights = {name: t + 1.0 for name, t in payload["initial_weights"].items()}
    return {"weights": weights, "samples": 1, "metrics": {"loss": 1.0}}


def zero_samples_train(payload):
    """Breaks the training contract: FedAvg cannot weigh a site that trained on nothing."""
    return {"weights": payload["initial_weights"], "samples": 0}


# -- evaluation: metrics whose weighted means are known ------------------------------------------------

EVAL_SAMPLES = {"site-1": 1, "site-2": 2, "site-3": 7}


def site_number(payload):
    return int(payload["site_name"].rsplit("-", 1)[1])


def metric_train(payload):
    """delta_train that also reports an accuracy of k / 10 and a non-numeric note (dropped)."""
    out = delta_train(payload)
    out["metrics"].update({"accuracy": site_number(payload) / 10, "note": "not a number"})
    return out


def delta_evaluate(payload):
    """Scores the model by its mean weight: ``mean_w``, ``score`` (k x mean_w) and ``dist_loss`` (|mean_w - 5|)."""
    mean_w = float(payload["weights"]["w"].double().mean())
    return {
        "metrics": {"mean_w": mean_w, "score": site_number(payload) * mean_w, "dist_loss": abs(mean_w - 5.0)},
        "samples": EVAL_SAMPLES[payload["site_name"]],
    }


def flaky_evaluate(payload):
    """delta_evaluate, but site-2 cannot evaluate round 0's global model (the first one)."""
    if payload["site_name"] == "site-2" and payload["round"] == 0:
        raise RuntimeError("validation data of site-2 is locked")
    return delta_evaluate(payload)


# -- guards: results that must never reach the global model --------------------------------------------


def bad_update_train(payload):
    """site-2 returns a bias of the wrong shape every round; site-3 diverges to NaN in its second round."""
    out = delta_train(payload)
    if payload["site_name"] == "site-2":
        out["weights"]["b"] = torch.zeros(5)
    if payload["site_name"] == "site-3" and payload["round"] == 1:
        out["weights"]["w"] = out["weights"]["w"] * float("nan")
    return out


def hanging_train(payload):
    """site-2 hangs in its second round (far longer than the test's train_timeout)."""
    if payload["site_name"] == "site-2" and payload["round"] == 1:
        time.sleep(25)
    return delta_train(payload)


class SmallConvNet(nn.Module):
    """A small CNN for the synthetic 16 x 16 images: the default loop's test model."""

    classes = 4

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, self.classes))

    def forward(self, x):
        return self.head(self.features(x))


class SmallConvNet8(SmallConvNet):
    """The same CNN for 8 classes (harder, so validation accuracy has room to rise)."""

    classes = 8


# -- algorithms: custom loops that use what fedprox and scaffold put in the payload ------------------------

SCAFFOLD_LR = 0.5


def fedprox_train(payload):
    """delta_train that reports the proximal term of its result: mu / 2 x 9 weights x k^2."""
    out = delta_train(payload)
    model = DeltaNet()
    model.load_state_dict(out["weights"])
    out["metrics"]["prox"] = float(payload["fedprox"](model))
    out["metrics"]["mu"] = payload["fedprox_mu"]
    return out


def scaffold_train(payload):
    """One 'step' that adds k to every weight (at learning rate SCAFFOLD_LR), then SCAFFOLD's correction.

    Reports how far the site moved from the global model (``moved``, the same for every weight).
    """
    model = DeltaNet()
    model.load_state_dict(payload["initial_weights"])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(float(site_number(payload)))
    payload["scaffold"].correct(model, SCAFFOLD_LR)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    moved = float((weights["b"] - payload["initial_weights"]["b"]).mean())
    return {"weights": weights, "samples": SAMPLES[payload["site_name"]], "metrics": {"moved": moved}}


def expected_scaffold(rounds: int, samples: dict[str, int]) -> tuple[float, list[dict[str, float]]]:
    """SCAFFOLD by hand for scaffold_train (every weight moves alike): the total shift and each round's moves."""
    total = sum(samples.values())
    c_global, c_local = 0.0, {s: 0.0 for s in samples}
    shift, moves = 0.0, []
    for _ in range(rounds):
        moved, c_delta = {}, {}
        for site in samples:
            moved[site] = int(site.rsplit("-", 1)[1]) - SCAFFOLD_LR * (c_global - c_local[site])
            new_local = c_local[site] - c_global - moved[site] / SCAFFOLD_LR
            c_delta[site], c_local[site] = new_local - c_local[site], new_local
        shift += sum(samples[s] * moved[s] for s in samples) / total
        c_global += sum(samples[s] * c_delta[s] for s in samples) / total
        moves.append(moved)
    return shift, moves


def logging_train(payload):
    """metric_train that also logs ``batch_loss`` twice a round through payload["log"] (k, then k + 0.5)."""
    out = metric_train(payload)
    for i in range(2):
        payload["log"]("batch_loss", site_number(payload) + i / 2)
    return out


def slow_logging_train(payload):
    """logging_train that takes 1.5 s a round, so a test can stop a tracking server mid-job."""
    time.sleep(1.5)
    return logging_train(payload)


class WideNet(nn.Module):
    """Default-loop image classifier whose weights (1.2 MB) are past the arrays a message carries inline."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.hidden = nn.Linear(3 * 16 * 16, 400)
        self.head = nn.Linear(400, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(x.flatten(1))))
