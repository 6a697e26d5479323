"""A small PyTorch MLP on scikit-learn's handwritten digits, configured by command-line flags. It prints its
validation accuracy after every epoch.

    python torch_mlp.py --lr 0.003 --epochs 8
    research-loop run "Tune the learning rate and dropout of my MLP" --script torch_mlp.py
"""

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lr", type=float, default=0.001, help="Adam's learning rate")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=32, help="hidden units")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    x, y = load_digits(return_X_y=True)
    x_train, x_valid, y_train, y_valid = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)
    x_train, x_valid = (torch.tensor(a, dtype=torch.float32) for a in (x_train, x_valid))
    y_train, y_valid = torch.tensor(y_train), torch.tensor(y_valid)

    model = nn.Sequential(
        nn.Linear(64, args.hidden), nn.ReLU(), nn.Dropout(args.dropout), nn.Linear(args.hidden, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), args.batch_size):
            rows = order[start : start + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[rows]), y_train[rows])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_valid).argmax(dim=1) == y_valid).float().mean().item()
        print(f"epoch {epoch}: loss={loss.item():.4f} val_accuracy={accuracy:.4f}")


if __name__ == "__main__":
    main()
