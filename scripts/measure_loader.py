"""Loader path vs tensor path throughput on Fashion-MNIST (CPU), interleaved rounds, best of 3:
``python scripts/measure_loader.py`` (figures in docs/byo.md)."""
import time

import torch
from torch.utils.data import Dataset

from unlearnkit.data import LoaderSource, TensorSource, load_dataset
from unlearnkit.methods import get_method
from unlearnkit.models import build_model

torch.set_num_threads(1)
d = load_dataset("fashion-mnist")
x, y = d.x_train, d.y_train

class Items(Dataset):  # a user's dataset: one item at a time, dict items
    def __init__(self, x, y): self.x, self.y = x, y
    def __len__(self): return len(self.y)
    def __getitem__(self, i): return {"image": self.x[i], "label": int(self.y[i])}

def data_rate(src, bs=256):
    t0 = time.perf_counter()
    n = 0
    for b in src.batches(bs, shuffle=True, generator=torch.Generator().manual_seed(0)):
        n += len(b.idx)
    return n / (time.perf_counter() - t0)

srcs = {"tensor path": TensorSource(x, y), "loader path, 0 workers": LoaderSource(Items(x, y)),
        "loader path, 2 workers": LoaderSource(Items(x, y), num_workers=2)}
best = {k: 0.0 for k in srcs}
for _ in range(3):
    for k, s in srcs.items():
        best[k] = max(best[k], data_rate(s))
print(f"data only: shuffled passes over {len(y)} Fashion-MNIST images, batch 256, best of 3 (images/s):")
for k, v in best.items():
    print(f"  {k:24s} {v:10.0f}")

n = 5000
torch.manual_seed(0)
model = build_model("small-cnn", d, channels=(16, 32))
m = get_method("finetune")(epochs=1, batch_size=128)
retains = {"tensor path": (x[:n], y[:n]), "loader path, 0 workers": LoaderSource(Items(x[:n], y[:n])),
           "loader path, 2 workers": LoaderSource(Items(x[:n], y[:n]), num_workers=2)}
best = {k: 0.0 for k in retains}
for _ in range(3):
    for k, retain in retains.items():
        t0 = time.perf_counter()
        m.unlearn(model, (x[n:n + 100], y[n:n + 100]), retain, seed=0)
        best[k] = max(best[k], n / (time.perf_counter() - t0))
print(f"fine-tune: 1 epoch over {n} retain images, small CNN [16, 32], 1 thread, best of 3 (images/s):")
for k, v in best.items():
    print(f"  {k:24s} {v:10.0f}")
