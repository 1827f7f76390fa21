"The shared training loop under torchrun with 2 gloo processes on CPU."
import os, shutil, subprocess, sys
from pathlib import Path
import socket
import pytest, torch

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def test_fit_under_torchrun_two_processes(tmp_path):
    torchrun = Path(sys.executable).parent/"torchrun"
    if not torchrun.exists(): pytest.skip("torchrun not installed")
    script = Path(__file__).parent/"scripts"/"ddp_toy.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path/f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["world"] == rank1["world"] == 2
    assert rank0["steps"] == rank1["steps"] == 2 * 64 // (8 * 2)      # each process took half of every epoch
    assert torch.equal(rank0["weight"], rank1["weight"])               # DDP kept the replicas identical
    assert rank0["history"] == 2 and (tmp_path/"ckpt"/"last.pt").exists()  # rank 0 wrote the checkpoint
