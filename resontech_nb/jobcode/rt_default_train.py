"""The default ``fl_train_model``: trains an image classifier on one shard through its manifest.

Shipped inside every job's ``custom/`` folder and imported there as the top-level module
``rt_default_train``; needs only the standard library, torch, numpy, Pillow and ``rt_manifest``.
The job's ``model_def.py`` calls ``default_train_model(Net, payload)`` when the notebook cell
defines no ``fl_train_model`` of its own.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import rt_manifest
import torch
from torch import nn
from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "num_classes": 0,
    "local_epochs": 2,
    "batch_size": 32,
    "learning_rate": 0.001,
    "img_size": 224,
    "manifest_file": rt_manifest.MANIFEST_FILE,
}


def _as_tensors(weights: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in weights.items():
        if isinstance(value, torch.Tensor):
            out[key] = value
        else:
            out[key] = torch.as_tensor(np.asarray(value))
    return out


def _device(requested: Any) -> torch.device:
    if requested:
        return torch.device(str(requested))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def shuffle_seed(round_number: int, site_name: str) -> int:
    """A stable seed per (round, site): the same job shuffles the same way when run again."""
    return zlib.crc32(f"{site_name}:{round_number}".encode())


def _check_output(output: torch.Tensor, num_classes: int) -> None:
    if output.ndim != 2 or output.shape[1] != num_classes:
        raise ValueError(
            f"the model returns shape {tuple(output.shape)} but the data has num_classes={num_classes}: "
            f"make the model's last layer output {num_classes} values per sample (batch, {num_classes}) "
            "or set num_classes to match the model"
        )


def _train_epochs(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    epochs: int,
    learning_rate: float,
    num_classes: int,
    multi_label: bool,
) -> list[tuple[float, float]]:
    """Train ``epochs`` epochs; return (mean loss, accuracy) per epoch."""
    criterion: nn.Module = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    history = []
    checked = False
    for _ in range(epochs):
        loss_sum, seen, correct, counted = 0.0, 0, 0.0, 0
        for images, targets in loader:
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            output = model(images)
            if not checked:
                _check_output(output, num_classes)
                checked = True
            loss = criterion(output, targets)
            loss.backward()
            optimizer.step()
            batch = images.shape[0]
            loss_sum += float(loss.detach()) * batch
            seen += batch
            with torch.no_grad():
                if multi_label:
                    predicted = (output > 0).to(targets.dtype)
                    correct += float((predicted == targets).float().sum())
                    counted += targets.numel()
                else:
                    correct += float((output.argmax(dim=1) == targets).sum())
                    counted += batch
        history.append((loss_sum / max(seen, 1), correct / max(counted, 1)))
    return history


def default_train_model(model_cls: type[nn.Module], payload: Mapping[str, Any]) -> dict[str, Any]:
    """Train ``model_cls`` on the shard in ``payload['data_path']``; return weights, samples and metrics.

    Weights are loaded before ``model.train()``. Single-label data uses CrossEntropyLoss, multi-label
    data BCEWithLogitsLoss; the optimizer is Adam. ``metrics`` holds the last epoch's mean loss and
    accuracy (per label for multi-label data) and the first epoch's loss as ``first_epoch_loss``.
    """
    hp = {**DEFAULTS, **dict(payload.get("hyperparams") or {})}
    data_path = payload.get("data_path")
    if not data_path:
        raise ValueError("payload['data_path'] is empty: the executor must pass the extracted shard folder")
    round_number = int(payload.get("round") or 0)
    site_name = str(payload.get("site_name") or "site")
    num_classes = int(hp["num_classes"] or 0)
    batch_size = int(hp["batch_size"])

    model = model_cls()
    weights = payload.get("initial_weights")
    if weights:
        model.load_state_dict(_as_tensors(weights))  # before train(): the guide's pitfall
    device = _device(payload.get("device"))

    samples = rt_manifest.read_manifest(data_path, hp["manifest_file"] or rt_manifest.MANIFEST_FILE, num_classes)
    if not samples:
        raise rt_manifest.ManifestError(
            f"the shard of {site_name} has no samples ({hp['manifest_file']} is empty): "
            "add samples to it or leave this site out"
        )
    if num_classes <= 0:
        num_classes = rt_manifest.infer_num_classes([samples])
    multi_label = hp.get("multi_label")
    multi_label = rt_manifest.is_multi_label(samples) if multi_label is None else bool(multi_label)

    dataset = rt_manifest.ManifestDataset(data_path, samples, num_classes, int(hp["img_size"]), multi_label)
    generator = torch.Generator()
    generator.manual_seed(shuffle_seed(round_number, site_name))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        num_workers=0,
        pin_memory=device.type == "cuda",
    )

    try:
        model.to(device)
        model.train()
        history = _train_epochs(
            model, loader, device, int(hp["local_epochs"]), float(hp["learning_rate"]), num_classes, multi_label
        )
    except torch.cuda.OutOfMemoryError:
        model.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise RuntimeError(
            f"CUDA out of memory with batch_size={batch_size}: lower batch_size in TrainingConfig "
            f"(e.g. %fl_submit --batch-size {max(1, batch_size // 2)})"
        ) from None

    last_loss, last_accuracy = history[-1]
    log.info("%s round %d: %d samples, loss %.4f, accuracy %.3f", site_name, round_number, len(dataset),
             last_loss, last_accuracy)
    return {
        "weights": {key: value.detach().to("cpu") for key, value in model.state_dict().items()},
        "samples": len(dataset),
        "metrics": {
            "loss": float(last_loss),
            "accuracy": float(last_accuracy),
            "first_epoch_loss": float(history[0][0]),
        },
    }
