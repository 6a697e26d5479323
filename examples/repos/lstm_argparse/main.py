"""Word-level language modelling with an LSTM, in the shape of PyTorch's word_language_model example.

python main.py --data ./data/tiny --epochs 2 --emsize 32 --nhid 32
"""

import argparse
import math
import time

import data
import model
import torch
from torch import nn

parser = argparse.ArgumentParser(description="LSTM language model")
parser.add_argument("--data", type=str, default="./data/tiny", help="location of the data corpus")
parser.add_argument("--emsize", type=int, default=200, help="size of word embeddings")
parser.add_argument("--nhid", type=int, default=200, help="number of hidden units per layer")
parser.add_argument("--nlayers", type=int, default=2, help="number of layers")
parser.add_argument("--lr", type=float, default=20, help="initial learning rate")
parser.add_argument("--clip", type=float, default=0.25, help="gradient clipping")
parser.add_argument("--epochs", type=int, default=40, help="upper epoch limit")
parser.add_argument("--batch_size", type=int, default=20, metavar="N", help="batch size")
parser.add_argument("--bptt", type=int, default=35, help="sequence length")
parser.add_argument("--dropout", type=float, default=0.2, help="dropout applied to layers (0 = no dropout)")
parser.add_argument("--seed", type=int, default=1111, help="random seed")
parser.add_argument("--save", type=str, default="model.pt", help="path to save the final model")
args = parser.parse_args()

torch.manual_seed(args.seed)
corpus = data.Corpus(args.data)


def batchify(ids, bsz):
    nbatch = ids.size(0) // bsz
    return ids[: nbatch * bsz].view(bsz, -1).t().contiguous()


train_data = batchify(corpus.train, args.batch_size)
val_data = batchify(corpus.valid, 10)
ntokens = len(corpus.dictionary)
net = model.RNNModel(ntokens, args.emsize, args.nhid, args.nlayers, args.dropout)
criterion = nn.CrossEntropyLoss()


def get_batch(source, i):
    seq_len = min(args.bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)


def evaluate(source):
    net.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, args.bptt):
            x, y = get_batch(source, i)
            output, _ = net(x)
            total += len(x) * criterion(output.view(-1, ntokens), y).item()
    return total / (len(source) - 1)


lr = args.lr
best_val_loss = None
for epoch in range(1, args.epochs + 1):
    start = time.time()
    net.train()
    for i in range(0, train_data.size(0) - 1, args.bptt):
        x, y = get_batch(train_data, i)
        net.zero_grad()
        output, _ = net(x)
        loss = criterion(output.view(-1, ntokens), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
        for p in net.parameters():
            p.data.add_(p.grad, alpha=-lr)
    val_loss = evaluate(val_data)
    print("-" * 89)
    print(
        f"| end of epoch {epoch:3d} | time: {time.time() - start:5.2f}s | valid loss {val_loss:5.2f} | "
        f"valid ppl {math.exp(val_loss):8.2f}"
    )
    print("-" * 89)
    if best_val_loss is None or val_loss < best_val_loss:
        torch.save(net.state_dict(), args.save)
        best_val_loss = val_loss
    else:
        lr /= 4.0
