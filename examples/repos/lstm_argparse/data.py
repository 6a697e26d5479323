"""A word-level corpus: train.txt, valid.txt and test.txt in one folder, each word an index, lines ended by <eos>."""

import os

import torch


class Dictionary:
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    def __init__(self, path):
        self.dictionary = Dictionary()
        self.train = self.tokenize(os.path.join(path, "train.txt"))
        self.valid = self.tokenize(os.path.join(path, "valid.txt"))
        self.test = self.tokenize(os.path.join(path, "test.txt"))

    def tokenize(self, path):
        assert os.path.exists(path), f"no file {path}"
        ids = []
        with open(path, encoding="utf8") as f:
            for line in f:
                ids += [self.dictionary.add_word(w) for w in line.split() + ["<eos>"]]
        return torch.tensor(ids, dtype=torch.int64)
