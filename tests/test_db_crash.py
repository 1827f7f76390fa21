"""A DB change is one commit: a crash injected before *every* write step of `pokecard index build|add|add --replace|remove`
and of the threshold seal (stage 06) leaves either the old DB or the new one, whole and consistent, never a mix."""
import json, shutil, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pytest
from pokecard.core import file_sha256
from pokecard.forge import forge_catalog, render_card
from pokecard.testing import thumbnail_model
from pokecard.index import index_main
from pokecard import refdb
from pokecard.refdb import ReferenceDB

CHILD = Path(__file__).parent/"scripts"/"db_crash_child.py"
THRESHOLDS = {"match_similarity": 0.75, "match_margin": 0.1, "uncertain_similarity": 0.5}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "Scans of 6 forged cards (4 in the first DB, 2 arriving later), a model inside a run folder whose stage-06 DB was sealed with thresholds for it, the first DB."
    root = tmp_path_factory.mktemp("crash")
    cards = forge_catalog(6, 2, seed=3)
    for folder, chosen in (("scans", cards[:4]), ("new_set", cards[4:])):
        (root/folder).mkdir()
        for card in chosen: render_card(card).save(root/folder/f"{card.card_id}.png")
    (root/"rescan").mkdir()  # a new scan for a card already indexed (another card's artwork under its id)
    render_card(cards[5]).save(root/"rescan"/f"{cards[0].card_id}.png")
    (root/"run"/"05_quantize").mkdir(parents=True); (root/"run"/"06_index"/"db").mkdir(parents=True)
    model = thumbnail_model(root/"run"/"05_quantize"/"student_int8.onnx")
    (root/"run"/"06_index"/"db"/"manifest.json").write_text(json.dumps({"thresholds": THRESHOLDS, "thresholds_model_sha256": file_sha256(model)}))
    base = root/"base"/"db"
    assert index_main(["build", "--images", str(root/"scans"), "--model", str(model), "--out", str(base), "--no-keypoints"]) == 0
    return dict(root=root, cards=[c.card_id for c in cards], model=model, base=base)


def db_state(db_dir:Path):
    "Everything a DB says (every file's checksum but the manifest's timestamps, thresholds, cards); opened with full checks."
    db = ReferenceDB.open(db_dir, checksums="full")
    files = sorted((name, entry["sha256"]) for name, entry in db.manifest["files"].items())
    return files, db.thresholds, sorted(db.card_ids)


def jobs(world) -> dict:
    root, cards, model = world["root"], world["cards"], world["model"]
    def job(*argv): return {"argv": list(argv)}
    return {"build": job("build", "--images", str(root/"new_set"), "--model", str(model), "--out", "{db}"),
            "add": job("add", "--db", "{db}", "--images", str(root/"new_set")),
            "add --replace": job("add", "--db", "{db}", "--images", str(root/"rescan"), "--replace"),
            "remove": job("remove", "--db", "{db}", cards[1], cards[2]),
            "add, no renameat2": {**job("add", "--db", "{db}", "--images", str(root/"new_set")), "no_exchange": True},
            "threshold seal": {"db": "{db}", "thresholds": {**THRESHOLDS, "match_similarity": 0.9}}}


def run_child(job:dict, db:Path, crash_at:int) -> subprocess.CompletedProcess:
    text = json.dumps(job).replace("{db}", str(db))
    job_file = db.parent/"job.json"; job_file.write_text(text)
    return subprocess.run([sys.executable, str(CHILD), str(crash_at), str(job_file)], capture_output=True, text=True, timeout=120)


def fresh_copy(world, folder:Path) -> Path:
    "A copy of the starting DB with keypoints and thresholds (so every part has something to lose)."
    db = folder/"db"
    shutil.copytree(world["base"], db)
    assert index_main(["build", "--images", str(world["root"]/"scans"), "--model", str(world["model"]), "--out", str(db)]) == 0
    return db


@pytest.fixture(scope="module")
def start(world, tmp_path_factory):
    return fresh_copy(world, tmp_path_factory.mktemp("start"))


@pytest.mark.parametrize("operation", ["build", "add", "add --replace", "remove", "add, no renameat2", "threshold seal"])
def test_a_crash_before_any_write_step_leaves_the_old_or_the_new_db(world, start, tmp_path, operation):
    job = jobs(world)[operation]
    before = db_state(start)
    assert before[1] == THRESHOLDS and ("keypoints.bin", ) <= tuple(n for n, _ in before[0] if n == "keypoints.bin")
    done_dir = tmp_path/"done"; shutil.copytree(start.parent, done_dir)
    done = run_child(job, done_dir/"db", 0)
    assert done.returncode == 0, done.stderr[-2000:]
    steps, after = json.loads(done.stdout.strip().splitlines()[-1])["steps"], db_state(done_dir/"db")
    assert after != before and steps >= 10

    def crash(n:int):
        folder = tmp_path/f"crash-{n}"; shutil.copytree(start.parent, folder)
        crashed = run_child(job, folder/"db", n)
        assert crashed.returncode == 86, (n, crashed.returncode, crashed.stderr[-2000:])
        state = db_state(folder/"db")  # opens, every checksum and every cross-check passes
        assert state in (before, after), f"crash before step {n} of {steps} left a DB that is neither the old nor the new one"
        assert db_state(folder/"db") == state   # opening again (which puts a .db.previous back) changes nothing
        refdb.set_thresholds(folder/"db", state[1])  # the next writer cleans up what the crash left
        assert sorted(p.name for p in folder.iterdir()) == sorted(["db", "job.json", ".db.lock"]), (n, sorted(p.name for p in folder.iterdir()))
        shutil.rmtree(folder)
        return state == after

    with ThreadPoolExecutor(2) as pool: outcomes = list(pool.map(crash, range(1, steps + 1)))
    assert not outcomes[0] and outcomes[-1]  # the first crash keeps the old DB, the last one finds the new DB in place
    assert outcomes == sorted(outcomes)      # and there is exactly one point where old turns into new: the commit


def test_each_index_command_commits_once(world, tmp_path, monkeypatch):
    db = fresh_copy(world, tmp_path)
    commits = []
    real_swap = refdb._swap_in
    monkeypatch.setattr(refdb, "_swap_in", lambda staging, db_dir: (commits.append(db_dir), real_swap(staging, db_dir)))
    for name in ("add", "add --replace", "remove", "build"):
        job = jobs(world)[name]
        commits.clear()
        assert index_main([a.replace("{db}", str(db)) for a in job["argv"]]) == 0
        assert len(commits) == 1, (name, commits)  # vectors, keypoints and thresholds in one swap
    keypoint_cards = json.loads((db/"manifest.json").read_text())["extras"]["keypoints.bin"]["cards"]
    assert keypoint_cards == len(ReferenceDB.open(db))
