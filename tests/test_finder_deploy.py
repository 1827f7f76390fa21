"The learned finder deployed like the embedder: carried in the reference DB (build, set-finder, checksums), chosen by the recogniser (--finder auto|classic|learned), recognising a scene end to end, torch-free on the Pi."
import contextlib, io, json, subprocess, sys
from pathlib import Path
from types import SimpleNamespace
import numpy as np, pytest
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from pokecard.cli import main as pokecard
from pokecard.core import PokecardError, file_sha256
from pokecard.forge import forge_catalog, render_card
from pokecard.images import to_model_input
from pokecard.learned_finder import FINDER_FILE, LearnedFinder, finder_input, fixed_maps_finder
from pokecard.photos import PhotoParams, simulate_scene
from pokecard.pi import OnnxEmbedder, Recognizer
from pokecard.testing import thumbnail_model
from pokecard.refdb import ReferenceDB, build_db, write_extra

FORBIDDEN = ("torch", "torchvision", "timm", "transformers", "sklearn", "umap", "matplotlib", "pandas", "onnx", "scipy")
PI_MODULES = {"pokecard.core", "pokecard.images", "pokecard.finder", "pokecard.refdb", "pokecard.decision", "pokecard.metrics",
              "pokecard.verify", "pokecard.cardhash", "pokecard.pi", "pokecard.pi.embedders", "pokecard.pi.recognizer", "pokecard.pi.camera", "pokecard.pi.cli", "pokecard.export", "pokecard.learned_finder"}  # test_pi's set, plus the learned finder


def scene_maps(photo:np.ndarray, quads:list) -> np.ndarray:
    "The true finder maps (3, 48, 64) in [0, 1] of a photo whose cards have corners `quads` (frame px, TL, TR, BR, BL as printed)."
    from pokecard.finder_training import target_maps  # the trainer's own targets (training side: torch)
    box = finder_input(photo)[1]
    return target_maps([box.to_input(q) for q in quads]).astype(np.float32)/255


def run(argv):
    "(exit code, stdout, stderr) of `pokecard ARGV` run in this process."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = pokecard(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    "Five forged cards, their scans in a folder, a DB of them (thumbnail model inside, no finder), a 2-card desk photo and a finder that sees it perfectly."
    folder = tmp_path_factory.mktemp("finder-deploy")
    scans = {c.card_id: render_card(c) for c in forge_catalog(5, 1, seed=3)}
    scan_dir = folder/"scans"; scan_dir.mkdir()
    for card_id, scan in scans.items(): scan.save(scan_dir/f"{card_id}.png")
    model = thumbnail_model(folder/"thumbnail.onnx")
    embeddings = OnnxEmbedder(model).embed(np.stack([to_model_input(s) for s in scans.values()]))
    db = build_db(folder/"db", embeddings, list(scans), {}, preprocessing={"fn": "pokecard.images.to_model_input", "size": 224, "resample": "bilinear"},
                  model_info={"file": "model.onnx", "sha256": file_sha256(model), "kind": "onnx-fp32"})
    write_extra(db, "model.onnx", model.read_bytes(), {"role": "model"})
    ids = list(scans)
    photo, truth = simulate_scene([scans[ids[0]], scans[ids[3]]], 5, PhotoParams.preset("easy"))
    photo, truth = np.asarray(photo.convert("RGB")), [np.asarray(t, np.float64) for t in truth]
    photo_path = folder/"scene.png"
    from PIL import Image
    Image.fromarray(photo).save(photo_path)
    finder = fixed_maps_finder(folder/"scene_finder.onnx", scene_maps(photo, truth))
    blind = fixed_maps_finder(folder/"blind_finder.onnx", np.zeros((3, 48, 64), np.float32))  # finds nothing, anywhere
    return SimpleNamespace(folder=folder, scans=scans, scan_dir=scan_dir, model=model, db=Path(db), photo=photo, photo_path=photo_path,
                           truth=truth, truth_ids=[ids[0], ids[3]], finder=finder, blind=blind)


def copy_db(demo, name):
    import shutil
    target = demo.folder/name
    shutil.copytree(demo.db, target)
    return target


def nearest(cards, corners):
    return min(cards, key=lambda c: np.abs(np.asarray(c["corners"] if isinstance(c, dict) else c.corners).mean(0) - corners.mean(0)).max())


# --- the DB carries the finder ------------------------------------------------------------------------------------------

def test_set_finder_stores_it_with_its_checksum(demo):
    db = copy_db(demo, "set-finder")
    code, out, err = run(["index", "set-finder", "--db", str(db), str(demo.finder)])
    assert code == 0, err
    manifest = ReferenceDB.open(db).manifest
    assert manifest["files"][FINDER_FILE]["sha256"] == file_sha256(demo.finder) == file_sha256(db/FINDER_FILE)
    assert manifest["extras"][FINDER_FILE] == {"role": "finder", "input": "uint8 (1, 192, 256, 3) RGB", "output": "maps (1, 3, 48, 64)",
                                               "maps": ["body", "core", "top"], "source": demo.finder.name}
    assert run(["index", "set-finder", "--db", str(db), str(demo.blind)])[0] == 0  # replace
    assert ReferenceDB.open(db).manifest["files"][FINDER_FILE]["sha256"] == file_sha256(demo.blind)
    assert run(["index", "remove", "--db", str(db), list(demo.scans)[4]])[0] == 0  # a card update keeps the finder
    assert file_sha256(db/FINDER_FILE) == file_sha256(demo.blind)
    assert run(["index", "set-finder", "--db", str(db), "--remove"])[0] == 0
    assert FINDER_FILE not in ReferenceDB.open(db).manifest["files"] and not (db/FINDER_FILE).exists()


def test_set_finder_refuses_what_is_not_a_finder(demo):
    db = copy_db(demo, "refuse")
    before = (db/"manifest.json").read_bytes()
    code, _, err = run(["index", "set-finder", "--db", str(db), str(demo.model)])  # the embedder: uint8 (N, 224, 224, 3) in
    assert code == 2 and "a finder model takes one input, uint8 (N, 192, 256, 3)" in err and "export_finder" in err, err
    junk = demo.folder/"junk.onnx"; junk.write_bytes(b"not a model")
    code, _, err = run(["index", "set-finder", "--db", str(db), str(junk)])
    assert code == 2 and "not an ONNX finder model" in err
    code, _, err = run(["index", "set-finder", "--db", str(db), str(demo.folder/"missing.onnx")])
    assert code == 2 and "not found" in err
    code, _, err = run(["index", "set-finder", "--db", str(db)])
    assert code == 2 and "FINDER.onnx) or --remove" in err
    assert (db/"manifest.json").read_bytes() == before  # nothing was committed


def test_index_build_with_finder_model(demo):
    out = demo.folder/"built"
    code, text, err = run(["index", "build", "--images", str(demo.scan_dir), "--model", str(demo.model), "--out", str(out),
                           "--finder-model", str(demo.finder), "--no-keypoints"])
    assert code == 0, err
    assert f"carried as {FINDER_FILE}" in text
    db = ReferenceDB.open(out)
    assert db.manifest["extras"][FINDER_FILE]["role"] == "finder" and db.manifest["files"][FINDER_FILE]["sha256"] == file_sha256(demo.finder)
    refused = demo.folder/"not-built"
    code, _, err = run(["index", "build", "--images", str(demo.scan_dir), "--model", str(demo.model), "--out", str(refused),
                        "--finder-model", str(demo.model)])
    assert code == 2 and "a finder model takes one input" in err and not refused.exists()  # refused before any work


def test_corrupt_finder_is_refused_on_open(demo):
    db = copy_db(demo, "corrupt")
    assert run(["index", "set-finder", "--db", str(db), str(demo.finder)])[0] == 0
    data = bytearray((db/FINDER_FILE).read_bytes()); data[len(data)//2] ^= 0xFF
    (db/FINDER_FILE).write_bytes(bytes(data))  # same size, one byte changed
    with pytest.raises(PokecardError, match=r"finder\.onnx fails its sha256 check.*index set-finder --db"): ReferenceDB.open(db)
    with pytest.raises(PokecardError, match=r"fails its sha256 check.*index set-finder"): Recognizer(db, checksums="none")  # checked on load, like the model
    assert Recognizer(db, checksums="none", finder="classic").finder == "classic"  # classic never reads it
    code, _, err = run(["recognize", str(demo.photo_path), "--db", str(db)])
    assert code == 2 and "sha256" in err and "set-finder" in err
    assert run(["index", "set-finder", "--db", str(db), str(demo.finder)])[0] == 0  # the way out works on the damaged DB
    assert Recognizer(db).finder == "learned"


# --- the recogniser chooses ---------------------------------------------------------------------------------------------

def test_learned_without_a_finder_is_a_clear_error(demo):
    with pytest.raises(PokecardError, match=r"carries no learned finder; add one with `pokecard index set-finder --db .* FINDER\.onnx`"):
        Recognizer(demo.db, finder="learned")
    code, _, err = run(["recognize", str(demo.photo_path), "--db", str(demo.db), "--finder", "learned"])
    assert code == 2 and "index set-finder" in err
    with pytest.raises(PokecardError, match="valid: auto, classic, learned"): Recognizer(demo.db, finder="magic")


def test_auto_picks_learned_when_the_db_carries_one(demo):
    plain = Recognizer(demo.db)
    assert (plain.finder, plain.learned_finder) == ("classic", None)  # no finder: exactly as before
    assert plain.recognize(demo.photo).finder == "classic"
    db = copy_db(demo, "auto")
    assert run(["index", "set-finder", "--db", str(db), str(demo.finder)])[0] == 0
    auto = Recognizer(db)
    assert auto.finder == "learned" and isinstance(auto.learned_finder, LearnedFinder)
    assert Recognizer(db, finder="classic").finder == "classic"


def test_learned_reads_each_card_once_and_falls_back_to_classic(demo):
    db = copy_db(demo, "once")
    assert run(["index", "set-finder", "--db", str(db), str(demo.finder)])[0] == 0
    recognizer, batches = Recognizer(db, finder="learned"), []
    embed = recognizer.embedder.embed
    recognizer.embedder.embed = lambda batch: batches.append(len(batch)) or embed(batch)
    result = recognizer.recognize(demo.photo)
    assert result.finder == "learned" and batches == [2]  # two cards, each read once: the finder knows which way up they are
    for corners, card_id in zip(demo.truth, demo.truth_ids):
        card = nearest(result.cards, corners)
        assert card.top[0].card_id == card_id and not card.rotated and np.abs(card.corners - corners).max() < 6
    assert run(["index", "set-finder", "--db", str(db), str(demo.blind)])[0] == 0  # a finder that finds nothing
    blind, classic = Recognizer(db, finder="learned"), Recognizer(demo.db)
    for image in (demo.photo, np.asarray(demo.scans[demo.truth_ids[0]].convert("RGB"))):  # a scene, and a tight crop
        fell_back, reference = blind.recognize(image), classic.recognize(image)
        assert fell_back.finder == "classic"
        assert [(c.outline, c.top[0].card_id) for c in fell_back.cards] == [(c.outline, c.top[0].card_id) for c in reference.cards]
        assert all(np.allclose(a.corners, b.corners) for a, b in zip(fell_back.cards, reference.cards))


# --- end to end, on the Pi's imports ------------------------------------------------------------------------------------

def test_recognize_cli_with_the_learned_finder_json(demo):
    db = copy_db(demo, "cli")
    assert run(["index", "set-finder", "--db", str(db), str(demo.finder)])[0] == 0
    code, out, err = run(["recognize", str(demo.photo_path), "--db", str(db), "--finder", "learned", "--json"])
    assert code == 0, err
    record = json.loads(out)
    assert list(record) == ["image", "cards", "timing_ms"] and len(record["cards"]) == 2  # the architecture's format, unchanged
    for corners, card_id in zip(demo.truth, demo.truth_ids):
        card = nearest(record["cards"], corners)
        assert card["top"][0]["card_id"] == card_id and card["outline"] == "found"
        assert np.abs(np.asarray(card["corners"]) - corners).max() < 6  # TL of the card as printed first
    from pokecard.pi import bench_latency_main, camera_main
    for main in (camera_main, bench_latency_main):
        help_text = io.StringIO()
        with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit): main(["--help"])
        assert "--finder {auto,classic,learned}" in help_text.getvalue()


def test_pi_imports_stay_torch_free_with_the_learned_finder(demo):
    db = copy_db(demo, "pi")
    assert run(["index", "set-finder", "--db", str(db), str(demo.finder)])[0] == 0
    code = f"""
import contextlib, io, json, sys
FORBIDDEN = {FORBIDDEN!r}
def loaded(): return sorted(m for m in sys.modules if m.split('.')[0] in FORBIDDEN)
from pokecard.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out): assert main(["recognize", sys.argv[2], "--db", sys.argv[1], "--finder", "learned", "--json"]) == 0
assert len(json.loads(out.getvalue())["cards"]) == 2
assert not loaded(), loaded()
print(sorted(m for m in sys.modules if m.startswith('pokecard.')))
"""
    done = subprocess.run([sys.executable, "-c", code, str(db), str(demo.photo_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    modules = set(eval(done.stdout.strip().splitlines()[-1]))
    assert "pokecard.learned_finder" in modules and modules <= PI_MODULES | {"pokecard.cli"}, modules
