"""Card hashes: `pokecard index` keeps them with the cards in every commit, and the recogniser's verification checks the cards
the hash finds closest beside the embedding's top five (issue 17: hard photos whose right card the embedding ranks low)."""
import json
from pathlib import Path
import numpy as np, pytest
from pokecard.cli import main
from pokecard.cardhash import CARD_HASHES_FILE, CardHashes, card_hash, db_card_hashes
from pokecard.finder import find_cards, rectify
from pokecard.forge import forge_catalog, render_card
from pokecard.photos import PhotoParams, simulate_crop
from pokecard.pi import Recognizer
from pokecard.testing import thumbnail_model
from pokecard.refdb import Hit, ReferenceDB
from pokecard.verify import KeypointSettings, Verifier, keypoints_blob, load_keypoints


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("cardhash")
    cards = forge_catalog(10, 3, seed=11, reprint_fraction=0.0)
    scans = root/"scans"; scans.mkdir()
    for card in cards: render_card(card).save(scans/f"{card.card_id}.png")
    return dict(root=root, scans=scans, ids=[c.card_id for c in cards], model=thumbnail_model(root/"thumb.onnx"),
                images={c.card_id: np.asarray(render_card(c)) for c in cards})


def index(*argv): return main(["index", *map(str, argv)])


def stored(db) -> CardHashes: return db_card_hashes(ReferenceDB.open(db))


def test_index_commands_keep_hashes_with_the_cards(kit, tmp_path):
    db = tmp_path/"db"
    assert index("build", "--images", kit["scans"], "--model", kit["model"], "--out", db) == 0
    hashes = stored(db)
    assert sorted(hashes) == sorted(kit["ids"])
    assert np.array_equal(hashes[kit["ids"][0]], card_hash(kit["images"][kit["ids"][0]]))
    assert json.loads((db/"manifest.json").read_text())["extras"][CARD_HASHES_FILE]["per_card"] is True
    assert index("remove", "--db", db, kit["ids"][0], kit["ids"][1]) == 0
    assert sorted(stored(db)) == sorted(kit["ids"][2:])
    few = tmp_path/"few"; few.mkdir()
    photo = simulate_crop(kit["images"][kit["ids"][0]], np.random.default_rng(3), PhotoParams.preset("easy"))
    photo.convert("RGB").save(few/"p1.jpg")
    assert index("add", "--db", db, "--card-id", kit["ids"][0], "--images", few/"p1.jpg") == 0  # a few-shot card gets the hash of its photo
    assert kit["ids"][0] in stored(db) and kit["ids"][1] not in stored(db)
    ReferenceDB.open(db)  # the parts agree: hashes, keypoints and vectors are of the same cards


def test_no_keypoints_means_no_hashes(kit, tmp_path):
    assert index("build", "--images", kit["scans"], "--model", kit["model"], "--out", tmp_path/"db", "--no-keypoints") == 0
    assert stored(tmp_path/"db") is None
    assert index("add", "--db", tmp_path/"db", "--images", kit["scans"], "--replace") == 0  # a DB without hashes gets none on add
    assert stored(tmp_path/"db") is None


def test_damaged_hash_file_is_a_clear_error(kit, tmp_path):
    with pytest.raises(Exception, match="unreadable"): CardHashes.from_bytes(b"PK\x03\x04 broken")


def verifier(kit, hashes:bool) -> Verifier:
    settings = KeypointSettings()
    blob = keypoints_blob({c: settings.extract(i, reference=True) for c, i in kit["images"].items()}, settings)
    found = CardHashes(list(kit["images"]), np.stack([card_hash(i) for i in kit["images"].values()])) if hashes else None
    return Verifier(load_keypoints(blob), hashes=found)


def test_hash_candidates_rescue_a_card_the_embedding_missed(kit):
    "The embedding's top five are all wrong; the hash finds the right card, the geometry verifies it and it comes first."
    target = kit["ids"][4]
    photo = np.asarray(simulate_crop(kit["images"][target], np.random.default_rng(1), PhotoParams.preset("medium")))
    card = rectify(photo, find_cards(photo, max_cards=1)[0].corners)
    wrong = [c for c in kit["ids"] if c != target][:6]
    hits = [Hit(c, 0.7 - 0.01 * i, i) for i, c in enumerate(wrong)]
    lookup = lambda ids: [Hit(c, 0.5, 99) for c in ids]
    without = verifier(kit, hashes=False).decide(card, hits, "uncertain", "auto", lookup)
    assert without[0][0].card_id != target and target not in [h.card_id for h in without[0]]
    checker = verifier(kit, hashes=True)
    shortlist = checker._shortlist(card, hits, lookup)  # the candidates, before verification
    assert [h.card_id for h in shortlist[:5]] == wrong[:5] and target in [h.card_id for h in shortlist[5:10]]
    ids = [h.card_id for h in shortlist]
    assert len(ids) == len(set(ids)) == len(set(wrong) | set(ids[5:10]))  # each card once: the embedding's sixth only if the hash did not add it
    ranked, decision, checked = checker.decide(card, hits, "uncertain", "auto", lookup)
    assert ranked[0].card_id == target and decision == "match", (ranked[:3], decision)
    assert target in {r["card_id"] for r in checked}
    assert checker.decide(card, hits, "uncertain", "auto", None)[0][0].card_id != target  # no lookup: embedding candidates only


def test_recogniser_uses_the_db_hashes(kit, tmp_path):
    db = tmp_path/"db"
    assert index("build", "--images", kit["scans"], "--model", kit["model"], "--out", db) == 0
    recognizer = Recognizer(db, verification="always")
    assert recognizer.verifier.hashes is not None and len(recognizer.verifier.hashes) == len(kit["ids"])
    target = kit["ids"][2]
    photo = np.asarray(simulate_crop(kit["images"][target], np.random.default_rng(5), PhotoParams.preset("medium")))
    card = recognizer.recognize(photo).cards[0]
    assert card.top[0].card_id == target and card.verification is not None
    # hash-found candidates carry the embedding's similarity as the search scores it
    query = recognizer.embedder.embed(recognizer.model_inputs([rectify(photo, find_cards(photo, max_cards=1)[0].corners)]))[0]
    hit = recognizer.db.card_hits(query, [target])[0]
    assert -1 <= hit.similarity <= 1 and recognizer.db.row_card_ids[hit.row] == target
