"Run by tests/test_ddp.py under torchrun: the shared fit() on a toy problem, 2 gloo processes on CPU."
import sys
from pathlib import Path
import numpy as np, torch
from torch import nn
from pokecard.training import fit, FitConfig, world

class Points:
    def __init__(self): self.epoch = 0
    def __len__(self): return 64
    def __getitem__(self, i):
        noise = np.random.default_rng([self.epoch, i]).normal(0, 0.3, 8).astype(np.float32)
        return {"x": np.eye(4, 8, dtype=np.float32)[i % 4] + noise, "y": np.eye(4, 8, dtype=np.float32)[i % 4]}

seen = []
def loss_fn(model, batch):
    seen.append(batch["x"].shape[0])
    return ((model(batch["x"]) - batch["y"]) ** 2).mean(), {}

out = Path(sys.argv[1])
torch.manual_seed(0)
model = nn.Linear(8, 8)
rank, size = world()
result = fit(model, Points(), loss_fn, FitConfig(epochs=2, batch_size=8, lr=1e-2, channels_last=False), out/"ckpt", progress=False)
torch.save({"weight": model.weight.detach(), "steps": len(seen), "world": size, "history": len(result.history)}, out/f"rank{rank}.pt")
