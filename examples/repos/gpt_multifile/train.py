"""Train a character-level GPT on data/tiny (prepare it first: python data/tiny/prepare.py).

python train.py                     # the defaults below
python train.py --max_iters=20      # any global, nanoGPT style (configurator.py)
"""

import os

import numpy as np
import torch
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
dataset = "tiny"
batch_size = 8
block_size = 16
n_layer = 1
n_head = 2
n_embd = 16
dropout = 0.0
learning_rate = 1e-3
max_iters = 60
eval_interval = 20
eval_iters = 4
exec(open("configurator.py").read())  # noqa: SIM115 - overrides from the command line, nanoGPT style
# -----------------------------------------------------------------------------

torch.manual_seed(1337)
data_dir = os.path.join("data", dataset)
train_data = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")
val_data = np.memmap(os.path.join(data_dir, "val.bin"), dtype=np.uint16, mode="r")
vocab_size = int(max(train_data.max(), val_data.max())) + 1


def get_batch(split):
    data = train_data if split == "train" else val_data
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([torch.from_numpy(data[i : i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + block_size].astype(np.int64)) for i in ix])
    return x, y


@torch.no_grad()
def estimate_loss(model):
    model.eval()
    out = {}
    for split in ("train", "val"):
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            losses[k] = model(*get_batch(split))[1].item()
        out[split] = losses.mean().item()
    model.train()
    return out


config = GPTConfig(block_size, vocab_size, n_layer, n_head, n_embd, dropout)
model = GPT(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
for step in range(max_iters + 1):
    if step % eval_interval == 0 or step == max_iters:
        losses = estimate_loss(model)
        print(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    if step == max_iters:
        break
    _, loss = model(*get_batch("train"))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
