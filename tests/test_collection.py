"The collection: schema migrations, refusing foreign or newer files, WAL under concurrent processes, a kill mid-write, export/import round trips and bad rows, the review queue, corrections teaching the DB (atomic, appended, keypoints kept), `pokecard collection` / `pokecard report`, and no training package imported."
import contextlib, io, json, os, signal, sqlite3, subprocess, sys, time, zipfile
from pathlib import Path
import numpy as np, pytest
from pokecard.cli import main
from pokecard.collection import (APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, Collection, connect, migrate, read_entries, teach)
from pokecard.forge import forge_catalog, render_card
from pokecard.index import build_reference_db
from pokecard.testing import thumbnail_model
from pokecard.refdb import ReferenceDB

FORBIDDEN = ("torch", "torchvision", "timm", "transformers", "sklearn", "umap", "matplotlib", "pandas", "onnx", "scipy")


def pokecard(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    cards = forge_catalog(5, 2, seed=7)
    (root/"scans").mkdir()
    for c in cards: render_card(c).save(root/"scans"/f"{c.card_id}.png")
    metadata = {c.card_id: {"name": c.name, "set_id": c.set_id, "number": str(c.number)} for c in cards}
    db, _ = build_reference_db({c.card_id: [root/"scans"/f"{c.card_id}.png"] for c in cards}, metadata, thumbnail_model(root/"thumb.onnx"),
                               root/"db", "onnx-fp32", keypoints=True)
    return dict(root=root, db=db, ids=[c.card_id for c in cards], images={c.card_id: render_card(c) for c in cards})


def test_modules_import_no_training_package():
    code = f"""
import sys
import pokecard.collection, pokecard.video, pokecard.serve
bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})
assert not bad, bad
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_version_1_file_is_migrated_and_keeps_its_cards(tmp_path):
    path = tmp_path/"v1.sqlite"
    with contextlib.closing(connect(path)) as connection:
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for statement in MIGRATIONS[0]: connection.execute(statement)
        connection.execute("PRAGMA user_version = 1")
        connection.execute("INSERT INTO cards (card_id, name, finish, condition, quantity, added_at) VALUES ('a-1', 'Old', 'normal', 'mint', 4, '2020-01-01T00:00:00Z')")
    collection = Collection(path)
    assert collection.to_json() == [{"card_id": "a-1", "name": "Old", "set_id": "", "number": "", "finish": "normal", "condition": "mint",
                                     "quantity": 4, "added_at": "2020-01-01T00:00:00Z"}]
    with contextlib.closing(connect(path)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert collection.review_queue() == []  # the v2 tables exist


@pytest.mark.parametrize("what", ["newer", "foreign", "not_sqlite", "folder"])
def test_files_that_are_not_our_collection_are_refused_untouched(tmp_path, capsys, what):
    path = tmp_path/"c.sqlite"
    if what == "newer":
        Collection(path)
        with contextlib.closing(connect(path)) as connection: connection.execute("PRAGMA user_version = 99")
    elif what == "foreign":
        with contextlib.closing(sqlite3.connect(path)) as connection: connection.execute("CREATE TABLE accounts (x)")
    elif what == "not_sqlite": path.write_text("my notes, not a database " * 50)
    else: path.mkdir()
    before = path.read_bytes() if path.is_file() else None
    code, out, err = pokecard(capsys, "collection", "export", "--collection", path)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert {"newer": "upgrade pokecard", "foreign": "not a pokecard collection", "not_sqlite": "not a pokecard collection", "folder": "is a folder"}[what] in err
    if what in ("foreign", "not_sqlite"): assert path.read_bytes() == before


WRITER = """
import sys
from pokecard.collection import Collection
collection = Collection(sys.argv[1])
for i in range(int(sys.argv[3])): collection.add({"card_id": f"w-{i % 7}", "condition": sys.argv[2]})
"""

def test_concurrent_processes_lose_no_addition(tmp_path):
    path = tmp_path/"shared.sqlite"
    Collection(path)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), condition, "40"]) for condition in ("mint", "near_mint", "mint")]
    for w in writers: assert w.wait(timeout=120) == 0
    entries = Collection(path).entries()
    assert sum(e["quantity"] for e in entries) == 120
    assert {e["condition"] for e in entries} == {"mint", "near_mint"} and len(entries) == 14
    with contextlib.closing(connect(path)) as connection: assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


KILLED = """
import sys, time
from pokecard.collection import Collection, connect, transaction
collection = Collection(sys.argv[1])
collection.add({"card_id": "kept-1"})
connection = connect(sys.argv[1])
with transaction(connection):
    connection.execute("INSERT INTO cards (card_id, finish, condition, quantity, added_at) VALUES ('lost-1', 'normal', 'mint', 1, 'x')")
    print("writing", flush=True)
    time.sleep(60)
"""

def test_a_kill_mid_write_loses_only_the_write_in_flight(tmp_path):
    path = tmp_path/"killed.sqlite"
    process = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    os.kill(process.pid, signal.SIGKILL); process.wait(timeout=30)
    collection = Collection(path)
    assert [e["card_id"] for e in collection.entries()] == ["kept-1"]
    collection.add({"card_id": "after-1"})  # the file is writable again
    with contextlib.closing(connect(path)) as connection: assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_export_import_round_trip_and_a_bad_row_imports_nothing(tmp_path, capsys):
    source = Collection(tmp_path/"a.sqlite")
    source.add({"card_id": "xy12-20", "name": "Magmar, the \"hot\" one", "set_id": "xy12", "number": "20", "finish": "holo", "quantity": 2})
    source.add({"card_id": "base1-4", "name": "Charizard", "finish": "reverse holo", "condition": "heavily played"})
    for fmt in ("csv", "json"):
        out = tmp_path/f"export.{fmt}"
        code, _, _ = pokecard(capsys, "collection", "export", "--collection", tmp_path/"a.sqlite", "--format", fmt, "--out", out)
        assert code == 0
        if fmt == "csv": assert out.read_text().startswith("card_id,name,set_id,number,finish,condition,quantity,added_at\n")
        code, text, _ = pokecard(capsys, "collection", "import", out, "--collection", tmp_path/f"b-{fmt}.sqlite")
        assert code == 0 and "imported 2" in text
        assert Collection(tmp_path/f"b-{fmt}.sqlite").to_json() == source.to_json()
    bad = tmp_path/"bad.json"
    bad.write_text(json.dumps([{"card_id": "ok-1"}, {"card_id": "../../etc/passwd"}]))
    code, _, err = pokecard(capsys, "collection", "import", bad, "--collection", tmp_path/"c.sqlite")
    assert code == 2 and "entry 2" in err and "card id" in err and "nothing was imported" in err
    assert Collection(tmp_path/"c.sqlite").entries() == []
    (tmp_path/"noheader.csv").write_text("xy12-20,3\n")
    code, _, err = pokecard(capsys, "collection", "import", tmp_path/"noheader.csv", "--collection", tmp_path/"c.sqlite")
    assert code == 2 and "header row with card_id" in err


def test_review_queue_orders_by_uncertainty_and_cli_lists_it(tmp_path, capsys):
    collection = Collection(tmp_path/"q.sqlite")
    def card(decision, s1, s2): return {"corners": [], "decision": decision, "top": [{"card_id": "a-1", "similarity": s1}, {"card_id": "a-2", "similarity": s2}]}
    ids = collection.record_frame({"cards": [card("uncertain", 0.8, 0.7), card("match", 0.9, 0.1), card("unknown", 0.4, 0.39), {"corners": [], "decision": "unknown", "top": []}]},
                                  None, [b"1", b"2", b"3", b"4"])
    assert [s["id"] for s in collection.review_queue()] == [ids[3], ids[2], ids[0]]
    collection.resolve(ids[3], "dismissed")
    code, out, _ = pokecard(capsys, "collection", "review", "--collection", tmp_path/"q.sqlite", "--json")
    assert code == 0 and [json.loads(l)["id"] for l in out.splitlines()] == [ids[2], ids[0]]
    with pytest.raises(Exception, match="status"): collection.resolve(ids[0], "maybe")


def test_teach_appends_a_reference_in_one_commit_and_keeps_keypoints(kit, tmp_path):
    import shutil
    db = tmp_path/"db"; shutil.copytree(kit["db"], db)
    before = ReferenceDB.open(db)
    keypoints_before = before.manifest["extras"]["keypoints.bin"]
    card_id = kit["ids"][1]
    photo = np.asarray(kit["images"][card_id].convert("RGB"))[::-1, ::-1]  # any view of the card
    assert teach(db, card_id, [photo, photo[10:-10, 10:-10]]) == before.rows + 2
    after = ReferenceDB.open(db)  # fully verified: vectors, keypoints and manifest agree
    assert after.row_card_ids.count(card_id) == 3 and len(after) == len(before)
    assert after.manifest["extras"]["keypoints.bin"]["cards"] == keypoints_before["cards"]
    assert not [p for p in db.parent.iterdir() if ".staging" in p.name]
    with pytest.raises(Exception, match="not in"): teach(db, "zz-404", [photo])
    with pytest.raises(Exception, match="card id"): teach(db, "../x", [photo])
    assert ReferenceDB.open(db).rows == after.rows  # refused before any change


def test_report_zip_holds_frames_recognition_manifest_and_versions(kit, tmp_path, capsys):
    collection = Collection(tmp_path/"r.sqlite")
    collection.record_frame({"cards": [{"corners": [], "decision": "uncertain", "top": [{"card_id": kit["ids"][0], "similarity": 0.5}]}]}, b"FRAME", [b"CROP"])
    photo = kit["root"]/"scans"/f"{kit['ids'][2]}.png"
    out = tmp_path/"bug.zip"
    code, text, err = pokecard(capsys, "report", photo, "--collection", tmp_path/"r.sqlite", "--db", kit["db"], "--out", out)
    assert code == 0, err
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        assert {"recognition.jsonl", "report.json", "db/manifest.json", "frames/scan1.jpg", "crops/scan1.jpg", "frames/photo0.png"} <= names
        assert not any(n.startswith("cards/") for n in names)
        records = [json.loads(l) for l in archive.read("recognition.jsonl").decode().splitlines()]
        assert records[1]["recognition"]["cards"][0]["top"][0]["card_id"] == kit["ids"][2]
        assert "numpy" in json.loads(archive.read("report.json"))["versions"]["packages"]
    code, _, _ = pokecard(capsys, "report", photo, "--db", kit["db"], "--out", tmp_path/"with.zip", "--card-images", kit["root"]/"scans")
    with zipfile.ZipFile(tmp_path/"with.zip") as archive: assert f"cards/{kit['ids'][2]}.png" in archive.namelist()
    (tmp_path/"broken.jpg").write_bytes(b"\xff\xd8garbage")
    code, _, err = pokecard(capsys, "report", tmp_path/"broken.jpg", "--out", tmp_path/"x.zip")
    assert code == 2 and "broken.jpg" in err and not (tmp_path/"x.zip").exists()
