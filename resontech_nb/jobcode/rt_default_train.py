"""The default ``fl_train_model`` and ``fl_evaluate_model``: an image classifier on one shard.

Shipped inside every job's ``custom/`` folder and imported there as the top-level module
``rt_default_train``; needs only the standard library, torch, numpy, Pillow, ``rt_manifest`` and
``rt_dataset``. The job's ``model_def.py`` calls ``default_train_model(Net, payload)`` (and
``default_evaluate_model(Net, payload)``) when the notebook cell defines no function of its own.

Which rows validate: manifest rows whose ``meta.split`` is ``"val"`` (or ``"valid"``, ``"validation"``)
are held out from training and used for validation; rows marked ``"test"`` are used for neither. A
shard without such rows holds out a deterministic ``val_fraction`` of its rows, chosen by a hash of
each row's id, so every round and every run picks the same ones.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import rt_dataset
import rt_manifest
import rt_samplecache
import rt_tensors
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
    "val_fraction": 0.2,
    "in_channels": 0,
    "seed": 0,
    "cache_mb": rt_samplecache.DEFAULT_CACHE_MB,
    "lr_schedule": "constant",
    "balance_labels": False,
}
LR_SCHEDULES = ("constant", "cosine")
LR_FLOOR = 0.1  # cosine ends at this share of the learning rate
VALIDATION_SPLITS = rt_manifest.VALIDATION_SPLITS
TEST_SPLITS = rt_manifest.TEST_SPLITS
split_samples = rt_manifest.split_samples  # (training rows, validation rows): the rule in the module docstring


def _as_tensors(weights: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in weights.items():
        if isinstance(value, torch.Tensor):
            out[key] = value
        else:
            out[key] = rt_tensors.as_tensor(value)
    return out


def _device(requested: Any) -> torch.device:
    if requested:
        return torch.device(str(requested))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def shuffle_seed(round_number: int, site_name: str, seed: int = 0) -> int:
    """A stable seed per (seed, round, site): the same job shuffles (and drops out) the same way when run again."""
    return zlib.crc32(f"{int(seed)}:{site_name}:{round_number}".encode())


def learning_rates(
    learning_rate: float, schedule: str, round_number: int, num_rounds: int, epochs: int, steps_per_epoch: int
) -> Callable[[int], float]:
    """The learning rate of this round's ``step``-th batch (counted from 0 over its local epochs).

    One curve over the whole job: ``cosine`` falls from ``learning_rate`` at the first batch of round 0 to
    ``LR_FLOOR`` of it at the last batch of the last round, every site at the same point in the same round
    (its position counted in its own batches); ``constant`` keeps ``learning_rate``.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={schedule!r} is not one of {', '.join(LR_SCHEDULES)}: set one of those")
    if schedule == "constant":
        return lambda step: learning_rate
    per_round = max(1, epochs * steps_per_epoch)
    last = max(1, max(num_rounds, round_number + 1) * per_round - 1)
    start = round_number * per_round

    def at(step: int) -> float:
        done = min(1.0, (start + step) / last)
        return learning_rate * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * done)))

    return at


def label_log_prior(rows: list[rt_manifest.Sample], num_classes: int) -> torch.Tensor:
    """log of the rows' label frequencies, one added to every class's count (a class a site lacks stays finite)."""
    counts = torch.ones(num_classes, dtype=torch.float64)
    for row in rows:
        for label in row.y:
            counts[label] += 1
    return torch.log(counts / counts.sum()).to(torch.float32)


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
    proximal: Any = None,
    scaffold: Any = None,
    rates: Callable[[int], float] | None = None,
    log_prior: torch.Tensor | None = None,
) -> list[tuple[float, float]]:
    """Train ``epochs`` epochs; return (mean loss, accuracy) per epoch.

    ``proximal`` (FedProx's ``payload["fedprox"]``) is added to the loss that is minimised, not to the loss
    reported; ``scaffold`` (``payload["scaffold"]``) corrects the parameters after every step. ``rates`` gives
    each batch's learning rate (``learning_rates``); ``log_prior`` (``balance_labels``) is added to the logits
    in the loss that is minimised, while the loss and accuracy reported are the model's own.
    """
    criterion: nn.Module = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    prior = None if log_prior is None or multi_label else log_prior.to(device)
    history = []
    checked = False
    step = 0
    for _ in range(epochs):
        loss_sum, seen, correct, counted = 0.0, 0, 0.0, 0
        for images, targets in loader:
            if rates is not None:
                learning_rate = rates(step)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate
            step += 1
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            output = model(images)
            if not checked:
                _check_output(output, num_classes)
                checked = True
            loss = criterion(output, targets)
            minimised = loss if prior is None else criterion(output + prior, targets)
            (minimised + proximal(model) if proximal is not None else minimised).backward()
            optimizer.step()
            if scaffold is not None:
                scaffold.correct(model, learning_rate)
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


class _ShardData:
    """The shard of one payload: its rows split into training and validation, with the label layout."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        hp = {**DEFAULTS, **dict(payload.get("hyperparams") or {})}
        data_path = payload.get("data_path")
        if not data_path:
            raise ValueError("payload['data_path'] is empty: the executor must pass the extracted shard folder")
        self.hp = hp
        self.data_path = data_path
        self.round = int(payload.get("round") or 0)
        self.site = str(payload.get("site_name") or "site")
        self.work_dir = payload.get("work_dir") or None  # the site's workspace: where the sample cache spills
        self.batch_size = int(hp["batch_size"])
        self.device = _device(payload.get("device"))
        manifest = hp["manifest_file"] or rt_manifest.MANIFEST_FILE
        num_classes = int(hp["num_classes"] or 0)
        samples = rt_manifest.read_manifest(data_path, manifest, num_classes)
        if not samples:
            raise rt_manifest.ManifestError(
                f"the shard of {self.site} has no samples ({manifest} is empty): "
                "add samples to it or leave this site out"
            )
        self.num_classes = num_classes or rt_manifest.infer_num_classes([samples])
        multi_label = hp.get("multi_label")
        self.multi_label = rt_manifest.is_multi_label(samples) if multi_label is None else bool(multi_label)
        self.train_rows, self.val_rows = split_samples(samples, float(hp.get("val_fraction") or 0.0))
        self.seed = shuffle_seed(self.round, self.site, int(hp.get("seed") or 0))
        self.channels = 3

    def feed(self, model: nn.Module) -> None:
        """Feed ``model`` the channels it expects: ``in_channels`` (from --input-shape), else its first layer's,
        else the images' own (grayscale 1, colour 3)."""
        channels = int(self.hp.get("in_channels") or 0) or rt_dataset.model_channels(model)
        if not channels:
            channels = self._image_channels()
        self.channels = channels

    def _image_channels(self) -> int:
        from PIL import Image

        rows = self.train_rows or self.val_rows
        if not rows:
            return 3
        probe = rt_dataset.ManifestDataset(self.data_path, rows[:1], self.num_classes, 8, self.multi_label)
        with Image.open(probe.image_path(rows[0])) as image:
            return rt_dataset.image_channels(image.mode)

    def loader(self, rows: list[rt_manifest.Sample], shuffle: bool) -> DataLoader:
        img_size = int(self.hp["img_size"])
        cache_mb = float(self.hp.get("cache_mb") or 0)
        store = rt_samplecache.store_for(self.data_path, img_size, self.channels, cache_mb, self.work_dir)
        dataset = rt_dataset.ManifestDataset(
            self.data_path,
            rows,
            self.num_classes,
            int(self.hp["img_size"]),
            self.multi_label,
            channels=self.channels,
            store=store,
        )
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator if shuffle else None,
            num_workers=0,
            collate_fn=rt_dataset.collate,
            pin_memory=self.device.type == "cuda",
        )

    def out_of_memory(self) -> RuntimeError:
        return RuntimeError(
            f"CUDA out of memory with batch_size={self.batch_size}: lower batch_size in TrainingConfig "
            f"(e.g. %fl_submit --batch-size {max(1, self.batch_size // 2)})"
        )


def _model_with(model_cls: type[nn.Module], weights: Any) -> nn.Module:
    model = model_cls()
    if weights:
        model.load_state_dict(_as_tensors(weights))  # before train()/eval(): the guide's pitfall
    return model


def _release(model: nn.Module) -> None:
    model.to("cpu")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def default_train_model(model_cls: type[nn.Module], payload: Mapping[str, Any]) -> dict[str, Any]:
    """Train ``model_cls`` on the training rows of the shard in ``payload['data_path']``.

    Returns weights, samples and metrics. Weights are loaded before ``model.train()``. Single-label data
    uses CrossEntropyLoss, multi-label data BCEWithLogitsLoss; the optimizer is Adam, its learning rate following
    ``lr_schedule`` over the job, and with ``balance_labels`` the loss minimised is corrected for the site's own
    label frequencies. Under FedProx the
    proximal term joins the loss; under SCAFFOLD each step is corrected by the control variates. ``metrics`` holds the
    last epoch's mean loss and accuracy (per label for multi-label data) and the first epoch's loss as
    ``first_epoch_loss``.
    """
    data = _ShardData(payload)
    if not data.train_rows:
        raise rt_manifest.ManifestError(
            f"the shard of {data.site} has no training rows (all are marked val or test): "
            "leave some rows unmarked or marked 'train'"
        )
    torch.manual_seed(data.seed)  # the round's randomness (dropout, augmentation): the same in every run
    model = _model_with(model_cls, payload.get("initial_weights"))
    data.feed(model)
    loader = data.loader(data.train_rows, shuffle=True)
    try:
        model.to(data.device)
        model.train()
        history = _train_epochs(
            model,
            loader,
            data.device,
            int(data.hp["local_epochs"]),
            float(data.hp["learning_rate"]),
            data.num_classes,
            data.multi_label,
            proximal=payload.get("fedprox"),
            scaffold=payload.get("scaffold"),
            rates=learning_rates(
                float(data.hp["learning_rate"]),
                str(data.hp.get("lr_schedule") or "constant"),
                data.round,
                int(payload.get("num_rounds") or 0),
                int(data.hp["local_epochs"]),
                len(loader),
            ),
            log_prior=label_log_prior(data.train_rows, data.num_classes) if data.hp.get("balance_labels") else None,
        )
    except torch.cuda.OutOfMemoryError:
        _release(model)
        raise data.out_of_memory() from None

    last_loss, last_accuracy = history[-1]
    log.info(
        "%s round %d: %d samples, loss %.4f, accuracy %.3f",
        data.site,
        data.round,
        len(data.train_rows),
        last_loss,
        last_accuracy,
    )
    return {
        "weights": {key: value.detach().to("cpu") for key, value in model.state_dict().items()},
        "samples": len(data.train_rows),
        "metrics": {
            "loss": float(last_loss),
            "accuracy": float(last_accuracy),
            "first_epoch_loss": float(history[0][0]),
        },
    }


def default_evaluate_model(model_cls: type[nn.Module], payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """Evaluate the global model ``payload['weights']`` on the shard's validation rows.

    Returns ``{"metrics": {"loss", "accuracy"}, "samples": n}``, or None when the shard holds no
    validation rows (``val_fraction`` 0 and none marked): the site then reports no validation.
    """
    data = _ShardData(payload)
    if not data.val_rows:
        return None
    model = _model_with(model_cls, payload.get("weights"))
    data.feed(model)
    criterion: nn.Module = (
        nn.BCEWithLogitsLoss(reduction="sum") if data.multi_label else nn.CrossEntropyLoss(reduction="sum")
    )
    loss_sum, correct, counted = 0.0, 0.0, 0
    try:
        model.to(data.device)
        model.eval()
        with torch.no_grad():
            checked = False
            for images, targets in data.loader(data.val_rows, shuffle=False):
                images = images.to(data.device, non_blocking=True)
                targets = targets.to(data.device, non_blocking=True)
                output = model(images)
                if not checked:
                    _check_output(output, data.num_classes)
                    checked = True
                batch_loss = float(criterion(output, targets))
                if data.multi_label:
                    loss_sum += batch_loss / data.num_classes
                    correct += float(((output > 0).to(targets.dtype) == targets).float().sum())
                    counted += targets.numel()
                else:
                    loss_sum += batch_loss
                    correct += float((output.argmax(dim=1) == targets).sum())
                    counted += images.shape[0]
    except torch.cuda.OutOfMemoryError:
        _release(model)
        raise data.out_of_memory() from None
    samples = len(data.val_rows)
    return {"metrics": {"loss": loss_sum / samples, "accuracy": correct / max(counted, 1)}, "samples": samples}
