"`pokecard index` keeps the reference keypoints in step with the DB; regression: onnxruntime after usearch used to segfault `pokecard index build`."
import subprocess, sys
import numpy as np, pytest
from pokecard.forge import forge_catalog, render_card
from pokecard.photos import PhotoParams, simulate_scene
from pokecard.pi import Recognizer
from pokecard.testing import thumbnail_model
from pokecard.refdb import ReferenceDB
from pokecard.verify import Verifier
from pokecard.index import index_main


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    cards = forge_catalog(4, 2, seed=3)
    for card in cards: render_card(card).save(folder / f"{card.card_id}.png")
    return folder, [c.card_id for c in cards], {c.card_id: render_card(c) for c in cards}


def test_index_commands_keep_keypoints_in_step(scans, tmp_path):
    folder, ids, images = scans
    model, db = thumbnail_model(tmp_path / "thumb.onnx"), tmp_path / "db"
    assert index_main(["build", "--images", str(folder), "--model", str(model), "--out", str(db)]) == 0
    assert sorted(Verifier.from_db(db).keypoints) == sorted(ids)
    assert index_main(["remove", "--db", str(db), ids[0], ids[1]]) == 0
    assert sorted(Verifier.from_db(db).keypoints) == sorted(ids[2:])
    photo, _ = simulate_scene([images[ids[0]]], 2, PhotoParams.preset("easy"))  # a desk photo of a card: found, rectified, then indexed
    photo_path = tmp_path / "photo.jpg"
    photo.convert("RGB").save(photo_path, quality=92)
    assert index_main(["add", "--db", str(db), "--images", str(photo_path), "--card-id", ids[0], "--name", "Few-shot"]) == 0
    assert sorted(Verifier.from_db(db).keypoints) == sorted([ids[0]] + ids[2:])
    card = Recognizer(db, verification="always").recognize(photo_path).cards[0]
    assert card.top[0].card_id == ids[0] and card.verification["inliers"][ids[0]] >= 10


def test_index_build_without_keypoints(scans, tmp_path):
    folder, ids, _ = scans
    db = tmp_path / "db"
    assert index_main(["build", "--images", str(folder), "--model", str(thumbnail_model(tmp_path / "t.onnx")), "--out", str(db), "--no-keypoints"]) == 0
    assert len(ReferenceDB.open(db)) == len(ids) and Verifier.from_db(db) is None

def test_onnxruntime_loads_after_the_index_modules():
    code = "import pokecard.refdb, pokecard.catalog, pokecard.index; import onnxruntime; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])
