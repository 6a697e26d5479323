"""image-classification: a ResNet-18 (He et al. 2016, in its CIFAR form) trained from scratch.

Offline by default: scikit-learn's bundled 8x8 handwritten digits, upsampled to 16x16, with a narrow network
(`width = 16`, a quarter of the paper's 64) so that a trial takes seconds on a CPU. For CIFAR-10 set
`dataset = "cifar10"` (from the Hugging Face cache, or downloaded into it when the hub can be reached),
`image_size = 32` and `width = 64`; a local folder with one subfolder of images per class works too.
`max_train_examples` caps the training split (0 keeps all), the same subset for every run and seed.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from experiments import data
from experiments.script import block_defaults
from experiments.training import (
    EpochLoss,
    autocast,
    evaluate,
    final_metrics,
    grad_scaler,
    report,
    resolve_device,
    seed_everything,
)

# --- hyperparameters ---
dataset = "digits_offline"
image_size = 16
learning_rate = 0.05
batch_size = 64
epochs = 3
weight_decay = 5e-4
optimizer = "sgd"
momentum = 0.9
lr_schedule = "cosine"
dropout = 0.0
augmentation = "none"
width = 16
max_train_examples = 0
# --- end hyperparameters ---
HYPERPARAMETERS = block_defaults(__file__)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut, which projects when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """Four stages of two blocks each, widths w, 2w, 4w, 8w; a 3x3 stem without max-pooling suits small images."""

    def __init__(self, in_channels: int, classes: int, width: int, dropout: float):
        super().__init__()
        layers = [
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        c_in = width
        for stage, stride in enumerate((1, 2, 2, 2)):
            c_out = width * 2**stage
            layers += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x):
        return self.head(self.dropout(self.features(x)))


def augment(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Random crops of the image padded by an eighth of its side, and ("crop_flip") mirror images, per image."""
    if mode == "none":
        return x
    n, c, size, _ = x.shape
    pad = max(1, size // 8)
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=generator).to(x.device)
    rows = (dy + torch.arange(size, device=x.device))[:, None, :, None]
    cols = (dx + torch.arange(size, device=x.device))[:, None, None, :]
    x = padded[
        torch.arange(n, device=x.device)[:, None, None, None],
        torch.arange(c, device=x.device)[:, None, None],
        rows,
        cols,
    ]
    if mode == "crop_flip":
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)[:, None, None, None]
        x = torch.where(flip, x.flip(-1), x)
    return x


def make_optimizer(params, name: str, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be sgd, adam or adamw, not {name!r}")


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    """Train with `hparams` over the defaults above; return validation metrics (and test ones if `holdout`)."""
    hp = {**HYPERPARAMETERS, **(hparams or {})}
    if hp["augmentation"] not in ("none", "crop", "crop_flip"):
        raise ValueError(f"augmentation must be none, crop or crop_flip, not {hp['augmentation']!r}")
    generator = seed_everything(seed)
    dev = resolve_device(device)
    images = data.load_images(
        hp["dataset"], int(hp["image_size"]), data_fraction, max_train=int(hp["max_train_examples"])
    )
    x_train, y_train = images.splits["train"]

    model = ResNet18(x_train.shape[1], len(images.classes), int(hp["width"]), float(hp["dropout"])).to(dev)
    opt = make_optimizer(
        model.parameters(),
        hp["optimizer"],
        float(hp["learning_rate"]),
        float(hp["momentum"]),
        float(hp["weight_decay"]),
    )
    train = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=int(hp["batch_size"]),
        shuffle=True,
        generator=generator,
        pin_memory=dev.type == "cuda",
    )
    steps = len(train) * int(hp["epochs"])
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    if hp["lr_schedule"] == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    scaler = grad_scaler(dev)

    for epoch in range(int(hp["epochs"])):
        train_loss = EpochLoss()
        for xb, yb in train:
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            with autocast(dev):
                loss = nn.functional.cross_entropy(model(augment(xb, hp["augmentation"], generator)), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            schedule.step()
            train_loss.add(loss, len(yb))
        val = evaluate(model, *images.splits["validation"])
        report(trial, val["accuracy"], epoch, train_loss=train_loss.mean(), **val)

    return final_metrics(model, images.splits, holdout, trial)
