"The runner end to end on toy stage notebooks in a temporary project."
import os, re, subprocess, sys, textwrap
from pathlib import Path
import nbformat, pytest, zmq
from pokecard.pipeline import run_pipeline, format_results

PARAMS_CELL = 'run = "ci"  # run name\nseed = 0  # seed\nextends = ""  # base params file\ndata = {}  # 01_data params\nteacher = {}  # 02_teacher params'

def toy_notebook(path: Path, body: str):
    "A stage notebook: a tagged parameters cell, then `body`."
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMS_CELL); params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(textwrap.dedent(body))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nbformat.write(nb, path)

DATA_BODY = """
from pokecard.pipeline import notebook_experiment
from pokecard.core import atomic_write_text
from pokecard.stages import stage_dir, write_manifest
P = notebook_experiment(run=run, seed=seed, extends=extends, data=data)
out = atomic_write_text(stage_dir(P, "01_data")/"catalog.csv", f"card_id\\n" + "\\n".join(f"c-{i}" for i in range(P.data.n_cards)))
write_manifest(P, "01_data", outputs=[out], metrics={"n_cards": P.data.n_cards})
"""
TEACHER_BODY = """
from pokecard.pipeline import notebook_experiment
from pokecard.core import atomic_write_text
from pokecard.stages import stage_dir, write_manifest
P = notebook_experiment(run=run, seed=seed, extends=extends, data=data, teacher=teacher)
if P.teacher.batch_size == 13: raise ValueError("unlucky batch size 13")
catalog = stage_dir(P, "01_data")/"catalog.csv"
rows = len(catalog.read_text().splitlines()) - 1
out = atomic_write_text(stage_dir(P, "02_teacher")/"report.txt", str(rows))
write_manifest(P, "02_teacher", inputs=[catalog], outputs=[out], metrics={"teacher_top1": 0.5})
"""

@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path/"settings.ini").write_text("[site]\noutputs_root = outputs\ndevice = cpu\n")
    (tmp_path/"nbs").mkdir(); (tmp_path/"params").mkdir()
    toy_notebook(tmp_path/"nbs/01_data.ipynb", DATA_BODY)
    toy_notebook(tmp_path/"nbs/02_teacher.ipynb", TEACHER_BODY)
    (tmp_path/"params/toy.yaml").write_text("run: toy\ndata:\n  n_cards: 5\n")
    monkeypatch.setenv("POKECARD_ROOT", str(tmp_path))
    monkeypatch.delenv("POKECARD_OUTPUTS_ROOT", raising=False)
    return tmp_path

def statuses(results): return {r.stage: r.status for r in results}

def test_runs_in_order_then_up_to_date_then_force(project):
    lines = []
    results = run_pipeline(project/"params/toy.yaml", echo=lines.append)
    assert [r.stage for r in results][:2] == ["01_data", "02_teacher"]
    assert statuses(results)["01_data"] == "ran" and statuses(results)["02_teacher"] == "ran"
    assert all(s == "not implemented" for st, s in statuses(results).items() if st not in ("01_data", "02_teacher"))
    assert (project/"outputs/toy/02_teacher/report.txt").read_text() == "5"  # 02 read what 01 wrote
    assert (project/"outputs/toy/notebooks/01_data.ipynb").is_file()
    assert "n_cards=5" in format_results(results)
    again = run_pipeline(project/"params/toy.yaml", echo=lines.append)
    assert statuses(again)["01_data"] == "up to date" and statuses(again)["02_teacher"] == "up to date"
    assert "teacher_top1=0.5" in format_results(again)
    forced = run_pipeline(project/"params/toy.yaml", stages="02", force=True, echo=lines.append)
    assert [(r.stage, r.status) for r in forced] == [("02_teacher", "ran")]

def test_upstream_change_reruns_downstream(project):
    run_pipeline(project/"params/toy.yaml", echo=lambda s: None)
    (project/"params/toy.yaml").write_text("run: toy\ndata:\n  n_cards: 7\n")
    results = run_pipeline(project/"params/toy.yaml", echo=lambda s: None)
    assert statuses(results)["01_data"] == "ran" and statuses(results)["02_teacher"] == "ran"
    assert (project/"outputs/toy/02_teacher/report.txt").read_text() == "7"
    # a downstream-only change leaves 01 alone
    (project/"params/toy.yaml").write_text("run: toy\ndata:\n  n_cards: 7\nteacher:\n  batch_size: 8\n")
    results = run_pipeline(project/"params/toy.yaml", echo=lambda s: None)
    assert statuses(results)["01_data"] == "up to date" and statuses(results)["02_teacher"] == "ran"

def test_tampered_output_reruns(project):
    run_pipeline(project/"params/toy.yaml", echo=lambda s: None)
    (project/"outputs/toy/01_data/catalog.csv").write_text("card_id\n")
    assert statuses(run_pipeline(project/"params/toy.yaml", stages="01", echo=lambda s: None))["01_data"] == "ran"

def test_failure_stops_and_names_error_and_notebook(project):
    (project/"params/bad.yaml").write_text("run: bad\nteacher:\n  batch_size: 13\n")
    lines = []
    results = run_pipeline(project/"params/bad.yaml", echo=lines.append)
    st = statuses(results)
    assert st["01_data"] == "ran" and st["02_teacher"] == "failed" and st["03_distill"] == "skipped"
    failure = next(r for r in results if r.status == "failed")
    assert "ValueError: unlucky batch size 13" in failure.detail
    assert str(project/"outputs/bad/notebooks/02_teacher.ipynb") in failure.detail
    assert any("unlucky batch size 13" in line for line in lines)

def test_cli_prints_table_and_fails_cleanly(project):
    env = {**os.environ, "POKECARD_ROOT": str(project)}
    cli = [str(Path(sys.executable).parent/"pokecard")]
    ok = subprocess.run(cli + ["run", "params/toy.yaml", "--stages", "01"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "01_data" in ok.stdout and "ran" in ok.stdout
    again = subprocess.run(cli + ["run", "params/toy.yaml", "--stages", "01"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert "up to date" in again.stdout
    bad = subprocess.run(cli + ["run", "params/nope.yaml"], cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not found" in bad.stderr

def test_cli_run_is_quiet_with_one_timed_line_per_stage(project):
    "Only declared parameters are injected (no papermill warnings), the kernel has no plain-TCP warning, each stage prints one timed line."
    env = {**os.environ, "POKECARD_ROOT": str(project)}
    cli = [str(Path(sys.executable).parent/"pokecard")]
    ran = subprocess.run(cli + ["run", "params/toy.yaml", "--stages", "01-02"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    output = ran.stdout + ran.stderr
    assert "Passed unknown parameter" not in output, output
    if zmq.has("curve"): assert "without encryption" not in output, output  # pyzmq without libsodium cannot encrypt; the kernel then warns
    assert re.search(r"^▶ 01_data \(no manifest\) … done in \d+\.\d s$", ran.stdout, re.M), ran.stdout
    assert re.search(r"^▶ 02_teacher \(no manifest\) … done in \d+\.\d s$", ran.stdout, re.M), ran.stdout
    injected = [c for c in nbformat.read(project/"outputs/toy/notebooks/01_data.ipynb", as_version=4).cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "data = " in injected[0].source and "distill" not in injected[0].source

def test_failure_shows_the_traceback_in_full(project):
    (project/"params/bad.yaml").write_text("run: bad\nteacher:\n  batch_size: 13\n")
    lines = []
    run_pipeline(project/"params/bad.yaml", echo=lines.append)
    failure = next(line for line in lines if line.startswith("▶ 02_teacher"))
    assert re.match(r"▶ 02_teacher \(no manifest\) … ✗ failed after \d+\.\d s\n", failure)
    assert 'raise ValueError("unlucky batch size 13")' in failure and "Traceback" in failure and "\x1b[" not in failure
    assert failure.rstrip().endswith(str(project/"outputs/bad/notebooks/02_teacher.ipynb"))

SLOW_DATA_BODY = DATA_BODY + """
import time
with open(stage_dir(P, "01_data")/".builds", "a") as log: log.write("built\\n")  # a dotfile: not an output the manifest hashes
time.sleep(3)
"""

def test_two_runners_build_a_stage_once(project):
    "Two processes (two torchrun ranks, two terminals) running the same stage: one builds it, the other waits for the lock and finds it built."
    toy_notebook(project/"nbs/01_data.ipynb", SLOW_DATA_BODY)
    env = {**os.environ, "POKECARD_ROOT": str(project)}
    cli = [str(Path(sys.executable).parent/"pokecard"), "run", "params/toy.yaml", "--stages", "01"]
    runs = [subprocess.Popen(cli, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    assert (project/"outputs/toy/01_data/.builds").read_text() == "built\n"  # the notebook ran once
    assert sum("built meanwhile by another process" in out or "up to date" in out for out, _ in outputs) == 1, outputs


def test_a_notebook_cannot_ask_for_the_stage_the_runner_is_running(monkeypatch):
    "run_upstream inside notebook 03 asking for 05 would wait forever on 03's lock, which its own runner holds: it is refused instead."
    from pokecard.core import PokecardError
    from pokecard.pipeline import RUNNING_STAGE, notebook_experiment, run_upstream
    monkeypatch.setenv(RUNNING_STAGE, "03_distill")
    with pytest.raises(PokecardError, match="the runner is running 03_distill right now"): run_upstream(notebook_experiment(run="guard"), "05_quantize")


def test_train_under_torchrun_checks_upstream_instead_of_building_it(tmp_path):
    "Every torchrun rank would build the same stale upstream stage (and wait on one lock inside DDP): with WORLD_SIZE > 1 `pokecard train` only checks."
    env = {**os.environ, "POKECARD_OUTPUTS_ROOT": str(tmp_path), "WORLD_SIZE": "2"}
    done = subprocess.run([str(Path(sys.executable).parent/"pokecard"), "train", "ci", "--stage", "03"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "run stage 01 first: `pokecard run ci --stages 01-01`" in done.stderr, done.stderr
    assert not (tmp_path/"ci"/"01_data"/"manifest.json").exists()  # nothing was built
