"""`pokecard index` never loses data: `--out` replaces only a DB, hints never point at a scans folder, bad models and bad
images give one clear line, card ids are counted once, DBs are readable by other users — and on a Pi install (no torch,
pandas or onnx) every index command works."""
import json, os, stat, subprocess, sys
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from pokecard.cli import main
from pokecard.forge import forge_catalog, render_card
from pokecard.photos import PhotoParams, simulate_scene
from pokecard.testing import thumbnail_model
from pokecard.refdb import ReferenceDB


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    "Scans of 5 forged cards, their pokemon-tcg-data metadata, a desk photo of one, and the stand-in ONNX embedder."
    root = tmp_path_factory.mktemp("kit")
    cards = forge_catalog(5, 2, seed=4)
    scans = root/"scans"; scans.mkdir()
    for card in cards: render_card(card).save(scans/f"{card.card_id}.png")
    meta = root/"metadata"; (meta/"cards"/"en").mkdir(parents=True); (meta/"sets").mkdir()
    sets = sorted({c.card_id.split("-")[0] for c in cards})
    for set_id in sets:
        records = [{"id": c.card_id, "name": f"Card {c.card_id}", "number": c.card_id.split("-")[1], "supertype": "Pokémon", "rarity": "Common"}
                   for c in cards if c.card_id.startswith(set_id + "-")]
        (meta/"cards"/"en"/f"{set_id}.json").write_text(json.dumps(records))
    (meta/"sets"/"en.json").write_text(json.dumps([{"id": s, "name": f"Set {s}"} for s in sets]))
    photo, _ = simulate_scene([render_card(cards[0])], 5, PhotoParams.preset("easy"))
    photo.convert("RGB").save(root/"photo.jpg", quality=92)
    return dict(root=root, scans=scans, metadata=meta, ids=[c.card_id for c in cards], model=thumbnail_model(root/"thumb.onnx"),
                photo=root/"photo.jpg", images={c.card_id: render_card(c) for c in cards})


def pokecard(*argv, capsys=None) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr() if capsys else None
    return code, (out.out + out.err) if out else ""


def snapshot(folder:Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def build(kit, out, *more, capsys=None):
    return pokecard("index", "build", "--images", kit["scans"], "--model", kit["model"], "--out", out, *more, capsys=capsys)


@pytest.mark.parametrize("where", ["unrelated", "images", "parent_of_images", "dot"])
def test_out_never_replaces_a_folder_that_is_not_a_db(kit, tmp_path, capsys, monkeypatch, where):
    home = tmp_path/"home"; (home/"Documents").mkdir(parents=True)
    (home/"Documents"/"taxes.txt").write_text("precious")
    scans = home/"scans"; scans.mkdir()
    for p in kit["scans"].iterdir(): (scans/p.name).write_bytes(p.read_bytes())
    out = {"unrelated": home/"Documents", "images": scans, "parent_of_images": home, "dot": Path(".")}[where]
    monkeypatch.chdir(home if where == "dot" else tmp_path)
    before = snapshot(tmp_path)
    code, text = pokecard("index", "build", "--images", scans, "--model", kit["model"], "--out", out, capsys=capsys)
    assert code == 2 and "Traceback" not in text
    assert ("--images folder or holds it" in text) if where != "unrelated" else ("not a pokecard reference DB" in text)
    assert snapshot(tmp_path) == before  # not one file lost or changed


def test_out_replaces_an_existing_db_and_fills_an_empty_folder(kit, tmp_path, capsys):
    empty = tmp_path/"empty"; empty.mkdir()
    assert build(kit, empty)[0] == 0 and len(ReferenceDB.open(empty)) == len(kit["ids"])
    assert build(kit, empty, "--no-keypoints")[0] == 0  # a DB is replaced, once the new one is whole
    assert "keypoints.bin" not in os.listdir(empty)
    (empty/"notes.txt").write_text("mine")  # a DB folder with someone's file in it is not replaced
    code, text = build(kit, empty, capsys=capsys)
    assert code == 2 and "notes.txt, which are not part of the DB" in text and (empty/"notes.txt").read_text() == "mine"


def test_recognize_on_a_scans_folder_suggests_a_safe_command(kit, capsys):
    code, text = pokecard("recognize", kit["photo"], "--db", kit["scans"], capsys=capsys)
    assert code == 2 and "is not a pokecard reference DB" in text
    suggested = text.split("--out", 1)[1].split("`")[0].strip()
    assert Path(suggested).resolve() != kit["scans"].resolve() and kit["scans"].resolve() not in Path(suggested).resolve().parents
    assert build(kit, suggested)[0] == 0 and snapshot(kit["scans"])  # following the hint works and the scans are still there


def test_a_bad_model_gives_one_line(kit, tmp_path, capsys):
    png = tmp_path/"model.onnx"; Image.new("RGB", (8, 8)).save(png, format="PNG")
    code, text = pokecard("index", "build", "--images", kit["scans"], "--model", png, "--out", tmp_path/"db", capsys=capsys)
    assert code == 2 and "Traceback" not in text and str(png) in text and "uint8" in text
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("ReduceMean", ["image"], ["embedding"], axes=[2, 3], keepdims=0)], "nchw",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])])
    nchw = tmp_path/"nchw.onnx"; onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), nchw)
    code, text = pokecard("index", "build", "--images", kit["scans"], "--model", nchw, "--out", tmp_path/"db", capsys=capsys)
    assert code == 2 and "Traceback" not in text and str(nchw) in text and "(N, S, S, 3)" in text
    assert not (tmp_path/"db").exists()


def test_tiny_duplicate_and_blank_images(kit, tmp_path, capsys, caplog):
    scans = tmp_path/"scans"; scans.mkdir()
    ids = kit["ids"]
    kit["images"][ids[0]].save(scans/f"{ids[0]}.png")
    Image.new("RGB", (4, 4), (200, 10, 10)).save(scans/f"{ids[1]}.png")        # too small to be a card
    (scans/f"{ids[2]}.png").write_bytes(b"\x89PNG broken")                     # corrupt, but ...
    kit["images"][ids[2]].convert("RGB").save(scans/f"{ids[2]}.webp")          # ... a readable duplicate stands in
    Image.new("RGB", (245, 342), (128, 128, 128)).save(scans/f"{ids[3]}.png")  # the stand-in model gives it an all-zero vector
    db = tmp_path/"db"
    caplog.set_level("WARNING", logger="pokecard")
    code = main(["index", "build", "--images", str(scans), "--model", str(kit["model"]), "--out", str(db)])
    log = caplog.text + capsys.readouterr().err
    assert code == 0
    assert sorted(ReferenceDB.open(db).card_ids) == sorted([ids[0], ids[2]])
    assert f"{ids[1]}.png" in log and "4×4" in log                              # skipped, with the reason
    assert f"{ids[3]}.png" in log and "all-zero" in log and "row" not in log.split("all-zero")[0].rsplit("\n", 1)[-1]


def test_remove_counts_each_card_once_and_names_flags(kit, tmp_path, capsys):
    db = tmp_path/"db"; assert build(kit, db)[0] == 0
    ids = kit["ids"]
    code, text = pokecard("index", "remove", "--db", db, ids[0], ids[0], capsys=capsys)
    assert code == 0 and "removed 1 card(s)" in text
    code, text = pokecard("index", "remove", "--db", db, "zz9-1", capsys=capsys)
    assert code == 2 and "--missing-ok" in text and "missing_ok" not in text
    code, text = pokecard("index", "remove", "--db", db, "zz9-1", ids[1], "--missing-ok", capsys=capsys)
    assert code == 0 and "removed 1 card(s)" in text
    code, text = pokecard("index", "add", "--db", db, "--images", kit["scans"], capsys=capsys)
    assert code == 2 and "--replace" in text and "on_existing" not in text


def test_db_is_readable_by_other_users(kit, tmp_path):
    old = os.umask(0o022)
    try: assert build(kit, tmp_path/"db")[0] == 0
    finally: os.umask(old)
    db = tmp_path/"db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in db.iterdir()} == {0o644}


PI_BLOCKER = """
import importlib.abc, sys
TRAINING = {"torch", "torchvision", "timm", "transformers", "pandas", "onnx", "onnxscript", "sklearn", "matplotlib", "umap",
            "pyarrow", "papermill", "imagehash", "scipy"}
class PiInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in TRAINING: raise ModuleNotFoundError(f"No module named {name!r} (not on a pokecard[pi] install)", name=name)
sys.meta_path.insert(0, PiInstall())
from pokecard.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in TRAINING)
assert not leaked, leaked
sys.exit(code)
"""

def pi(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PI_BLOCKER, *map(str, argv)], capture_output=True, text=True, timeout=300)


def test_every_index_command_works_on_a_pi_install(kit, tmp_path):
    probe = pi("index", "--help")
    assert probe.returncode == 0, probe.stderr[-2000:]
    ids, db = kit["ids"], tmp_path/"db"
    first = tmp_path/"first"; first.mkdir()
    for card_id in ids[:3]: (first/f"{card_id}.png").write_bytes((kit["scans"]/f"{card_id}.png").read_bytes())
    later = tmp_path/"later"; later.mkdir()
    for card_id in ids[3:]: (later/f"{card_id}.png").write_bytes((kit["scans"]/f"{card_id}.png").read_bytes())
    steps = [("index", "build", "--images", first, "--metadata", kit["metadata"], "--model", kit["model"], "--out", db),
             ("index", "add", "--db", db, "--images", later, "--metadata", kit["metadata"]),
             ("index", "remove", "--db", db, ids[0]),
             ("index", "add", "--db", db, "--images", kit["photo"], "--card-id", ids[0], "--name", "Few-shot"),
             ("recognize", kit["photo"], "--db", db, "--json")]
    for argv in steps:
        done = pi(*argv)
        assert done.returncode == 0, (argv, done.stderr[-2000:])
    opened = ReferenceDB.open(db)
    assert sorted(opened.card_ids) == sorted(ids)
    assert opened.card_info(ids[1])["name"] == f"Card {ids[1]}" and opened.card_info(ids[1])["set_name"]  # metadata without pandas
    assert json.loads(done.stdout.splitlines()[0])["cards"][0]["top"][0]["card_id"] == ids[0]


def test_reference_heights_index_small_views_and_add_follows_them(kit, tmp_path, capsys):
    db = tmp_path/"db"
    first = tmp_path/"first"; first.mkdir()
    for card_id in kit["ids"][:3]: (first/f"{card_id}.png").write_bytes((kit["scans"]/f"{card_id}.png").read_bytes())
    code, text = pokecard("index", "build", "--images", first, "--model", kit["model"], "--out", db, "--reference-heights", "0,180,110", capsys=capsys)
    assert code == 0, text
    opened = ReferenceDB.open(db)
    assert (len(opened), opened.rows) == (3, 9) and opened.manifest["preprocessing"]["reference_heights"] == [0, 180, 110]
    later = tmp_path/"later"; later.mkdir()
    (later/f"{kit['ids'][3]}.png").write_bytes((kit["scans"]/f"{kit['ids'][3]}.png").read_bytes())
    assert pokecard("index", "add", "--db", db, "--images", later)[0] == 0
    assert ReferenceDB.open(db).rows == 12  # a new scan gets the DB's three views too
    assert pokecard("index", "add", "--db", db, "--images", kit["photo"], "--card-id", kit["ids"][4])[0] == 0
    assert ReferenceDB.open(db).rows == 13  # a few-shot photo is a photo already: one row
    code, text = pokecard("index", "build", "--images", first, "--model", kit["model"], "--out", tmp_path/"x", "--reference-heights", "0,12", capsys=capsys)
    assert code == 2 and "at least 32 px" in text


def test_recognize_a_blank_photo_names_the_file_not_a_row(kit, tmp_path, capsys):
    db = tmp_path/"db"; assert build(kit, db)[0] == 0
    blank = tmp_path/"blank.png"; Image.new("RGB", (640, 480), (128, 128, 128)).save(blank)  # the stand-in model gives it an all-zero vector
    code, text = pokecard("recognize", blank, "--db", db, capsys=capsys)
    assert "blank.png" in text and "all-zero embedding" in text and "row 0" not in text


def test_bench_latency_times_camera_frames_and_a_video(kit, tmp_path, capsys):
    import cv2
    from pokecard.pi import scene_frames
    db = tmp_path/"db"; assert build(kit, db)[0] == 0
    code, text = pokecard("bench-latency", "--db", db, "--scenes", kit["scans"], "--repeat", 1, capsys=capsys)
    assert code == 0, text
    assert "bare forward (1 input)" in text and "640x480, 1 card" in text and "640x480, 4 cards" in text and "× forward p50" in text
    video = tmp_path/"pack.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for frame in scene_frames([kit["images"][c] for c in kit["ids"]], 1, n_frames=5): writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    code = main(["bench-latency", "--db", str(db), "--video", str(video), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out.strip().splitlines()[-1])["video"]
    assert result["frames"] == 5 and result["frames_per_s"] > 0
    with pytest.raises(SystemExit) as stopped: main(["bench-latency", "--db", str(db)])
    assert stopped.value.code == 2 and "--scenes" in capsys.readouterr().err
