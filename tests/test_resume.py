"Stage 03 killed mid-epoch (SIGKILL) and started again ends with the same student as an uninterrupted run."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
PARAMS = f"extends: {ROOT/'params'/'ci.yaml'}\nrun: resume\ndistill:\n  epochs: 2\n  max_steps: 4\n"

def train(outputs: Path, params: Path, kill_in_epoch_2: bool = False):
    "`pokecard train PARAMS --stage 03` in a subprocess; optionally SIGKILL it after epoch 1's checkpoint."
    env = {**os.environ, "POKECARD_OUTPUTS_ROOT": str(outputs), "POKECARD_DEVICE": "cpu"}
    cmd = [str(Path(sys.executable).parent/"pokecard"), "train", str(params), "--stage", "03"]
    if not kill_in_epoch_2:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        return
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    last = outputs/"resume"/"03_distill"/"checkpoints"/"last.pt"
    deadline = time.time() + 900
    while not last.exists():  # epoch 1 has ended and checkpointed
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(2)  # into epoch 2
    assert proc.poll() is None, "training finished before it could be killed mid-epoch"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

def test_killed_training_resumes_to_the_same_result(tmp_path):
    params = tmp_path/"resume.yaml"
    params.write_text(PARAMS)
    clean, killed = tmp_path/"clean", tmp_path/"killed"
    train(clean, params)
    (killed/"resume").mkdir(parents=True)
    for stage in ("01_data", "02_teacher"):  # same inputs: no need to build them twice
        shutil.copytree(clean/"resume"/stage, killed/"resume"/stage)
    train(killed, params, kill_in_epoch_2=True)
    assert not (killed/"resume"/"03_distill"/"student_stage1.pt").exists()
    train(killed, params)
    a, b = (torch.load(root/"resume"/"03_distill"/"student_stage1.pt", weights_only=True) for root in (clean, killed))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    ma, mb = (json.loads((root/"resume"/"03_distill"/"manifest.json").read_text())["metrics"] for root in (clean, killed))
    assert (ma["top1"], ma["top5"]) == (mb["top1"], mb["top5"])
