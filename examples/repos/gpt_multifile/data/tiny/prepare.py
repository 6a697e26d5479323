"""Encode input.txt as characters into train.bin and val.bin (90% / 10%), as nanoGPT's prepare scripts do."""

import os

import numpy as np

here = os.path.dirname(__file__)
with open(os.path.join(here, "input.txt")) as f:
    text = f.read()
chars = sorted(set(text))
ids = np.array([chars.index(c) for c in text], dtype=np.uint16)
n = int(0.9 * len(ids))
ids[:n].tofile(os.path.join(here, "train.bin"))
ids[n:].tofile(os.path.join(here, "val.bin"))
print(f"{len(chars)} characters, {n} train tokens, {len(ids) - n} val tokens")
