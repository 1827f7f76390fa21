"Geometric verification (pokecard.verify): bad inputs, the keypoints file format (round trip, corruption, memory map), the DB round trip through add/remove, re-ranking rules, torch-free import, and the real scans and photos in ../shared/data (skipped when absent)."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from pokecard.core import PokecardError
from pokecard.forge import forge_catalog, render_card
from pokecard.photos import PhotoParams, simulate_crop
from pokecard.finder import find_cards, rectify
from pokecard.images import load_image
from pokecard.refdb import ReferenceDB, Hit, build_db, add_cards, remove_cards
from pokecard.verify import (keypoints_update, KEYPOINTS_FILE, MIN_INLIERS, VERIFY_SIZE, KeypointSettings, KeypointStore, Verifier, add_keypoints_to_db,
                             card_like, extract_keypoints, keypoints_blob, load_keypoints, match_card, rerank, verify_candidates)

MODEL = dict(file="model.onnx", sha256="ab" * 32, kind="onnx-fp32")
PREP = {"fn": "pokecard.images.to_model_input", "size": 224, "resample": "bilinear"}


def data_root():
    root = Path(os.environ.get("POKECARD_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return root if (root / "photos").is_dir() and (root / "cards" / "xy12").is_dir() else None


def rectified_photo(photo):
    photo = np.asarray(photo)
    return rectify(photo, find_cards(photo, max_cards=1)[0].corners)


@pytest.fixture(scope="module")
def forged():
    "Six forged cards (two reprint groups among them), their scans and reference keypoints."
    cards = forge_catalog(6, 2, seed=3, reprint_fraction=0.6)
    scans = {c.card_id: np.asarray(render_card(c)) for c in cards}
    keypoints = {c: KeypointSettings().extract(s, reference=True) for c, s in scans.items()}
    return cards, scans, keypoints


def make_db(path, card_ids):
    vectors = np.random.default_rng(0).normal(size=(len(card_ids), 8)).astype(np.float32)
    return build_db(path, vectors, list(card_ids), model_info=MODEL, preprocessing=PREP)


# ---------- extraction: bad inputs ----------
@pytest.mark.parametrize("bad, message", [
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((8, 8, 3), np.uint8), "too small"),
    (np.zeros((64, 64, 2), np.uint8), "uint8"),
    ("no/such/file.png", "no such file"),
    (12, "PIL image"),
    (None, "PIL image"),
])
def test_extract_rejects_bad_images(bad, message):
    with pytest.raises(PokecardError, match=message):
        extract_keypoints(bad)


@pytest.mark.parametrize("kwargs", [dict(max_keypoints=0), dict(max_keypoints=2.5), dict(size=(10, 10)), dict(size=320), dict(size=(320, 447, 3))])
def test_extract_rejects_bad_settings(kwargs):
    with pytest.raises(PokecardError):
        extract_keypoints(np.zeros((626, 448, 3), np.uint8), **kwargs)


def test_extract_accepts_every_image_kind(forged, tmp_path):
    _, scans, _ = forged
    scan = next(iter(scans.values()))
    rgba = np.dstack([scan, np.full(scan.shape[:2], 255, np.uint8)])
    Image.fromarray(scan).save(tmp_path / "card.png")
    results = [extract_keypoints(x) for x in (scan, rgba, Image.fromarray(scan), tmp_path / "card.png", str(tmp_path / "card.png"))]
    for points, descriptors in results:
        np.testing.assert_array_equal(descriptors, results[0][1])
        assert points.dtype == np.float32 and points.shape == (len(descriptors), 2) and descriptors.shape[1] == 32
    grey = extract_keypoints(np.asarray(Image.fromarray(scan).convert("L")))
    assert len(grey[0]) > 100


def test_extraction_is_deterministic_and_sized(forged):
    _, scans, _ = forged
    scan = next(iter(scans.values()))
    a, b = extract_keypoints(scan), extract_keypoints(scan)
    np.testing.assert_array_equal(a[0], b[0]); np.testing.assert_array_equal(a[1], b[1])
    points, _ = extract_keypoints(scan, size=(448, 626))
    assert points[:, 0].max() < 448 and points[:, 1].max() < 626 and points[:, 1].max() > 447  # in the pixels of the size asked for


# ---------- the keypoints file ----------
def test_blob_round_trip_and_memory_map(forged, tmp_path):
    _, _, keypoints = forged
    settings = KeypointSettings(max_keypoints=300)
    blob = keypoints_blob(keypoints, settings)
    store = load_keypoints(blob)
    assert isinstance(store, KeypointStore) and store.settings == settings and list(store) == list(keypoints)
    for card_id, (points, descriptors) in keypoints.items():
        got_points, got_descriptors = store[card_id]
        np.testing.assert_array_equal(got_descriptors, descriptors)
        np.testing.assert_allclose(got_points, points, atol=0.25)
        assert got_points.dtype == np.float32
    (tmp_path / "kp.bin").write_bytes(blob)
    mapped = load_keypoints(np.memmap(tmp_path / "kp.bin", dtype=np.uint8, mode="r"))
    np.testing.assert_array_equal(mapped[next(iter(keypoints))][1], store[next(iter(keypoints))][1])
    assert load_keypoints(bytearray(blob)).card_ids == store.card_ids
    assert keypoints_blob(store) == blob  # rewriting a store changes nothing


def test_blob_with_empty_cards():
    store = load_keypoints(keypoints_blob({"a-1": (np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)),
                                           "a-2": (np.ones((3, 2), np.float32), np.ones((3, 32), np.uint8))}))
    assert [len(store[c][0]) for c in store] == [0, 3]


def _header(blob):
    length = int.from_bytes(blob[8:16], "little")
    return json.loads(blob[16:16 + length]), length


def _with_header(blob, header, length):
    encoded = json.dumps(header, separators=(",", ":")).encode()
    assert len(encoded) <= length + 32
    body = bytearray(blob)
    body[8:16] = len(encoded).to_bytes(8, "little")
    body[16:16 + max(length, len(encoded))] = encoded.ljust(max(length, len(encoded)), b" ")
    return bytes(body)


CORRUPTIONS = {
    "empty": lambda b, h, n: b"",
    "truncated": lambda b, h, n: b[:-100],
    "magic": lambda b, h, n: b"PK\x03\x04" + b[4:],
    "huge_header": lambda b, h, n: b[:8] + (10**12).to_bytes(8, "little") + b[16:],
    "not_json": lambda b, h, n: b[:16] + b"{" * n + b[16 + n:],
    "format": lambda b, h, n: _with_header(b, {**h, "format": "other"}, n),
    "version": lambda b, h, n: _with_header(b, {**h, "version": 99}, n),
    "counts_sum": lambda b, h, n: _with_header(b, {**h, "counts": [c + 1 for c in h["counts"]]}, n),
    "negative_count": lambda b, h, n: _with_header(b, {**h, "counts": [-1] + h["counts"][1:]}, n),
    "bad_card_id": lambda b, h, n: _with_header(b, {**h, "card_ids": ["../x"] + h["card_ids"][1:]}, n),
    "duplicate_id": lambda b, h, n: _with_header(b, {**h, "card_ids": [h["card_ids"][0]] * len(h["card_ids"])}, n),
    "dtype": lambda b, h, n: _with_header(b, {**h, "arrays": {**h["arrays"], "points": {**h["arrays"]["points"], "dtype": "<f8"}}}, n),
    "offset": lambda b, h, n: _with_header(b, {**h, "arrays": {**h["arrays"], "descriptors": {**h["arrays"]["descriptors"], "offset": 10**9}}}, n),
    "settings": lambda b, h, n: _with_header(b, {**h, "settings": {"detector": "sift"}}, n),
    "pickle": lambda b, h, n: b"\x80\x04\x95" + b[3:],
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_blobs_raise_a_clear_error(forged, corruption):
    _, _, keypoints = forged
    blob = keypoints_blob(dict(list(keypoints.items())[:3]))
    header, length = _header(blob)
    with pytest.raises(PokecardError, match="keypoint|card id"):
        load_keypoints(CORRUPTIONS[corruption](blob, header, length))


@pytest.mark.parametrize("per_card, message", [
    ({"a/b": (np.zeros((1, 2)), np.zeros((1, 32), np.uint8))}, "card id"),
    ({"a-1": (np.zeros((2, 3)), np.zeros((2, 32), np.uint8))}, "points"),
    ({"a-1": (np.full((1, 2), np.nan), np.zeros((1, 32), np.uint8))}, "points"),
    ({"a-1": (np.full((1, 2), 5000.0), np.zeros((1, 32), np.uint8))}, "inside"),
    ({"a-1": (np.zeros((2, 2)), np.zeros((3, 32), np.uint8))}, "descriptors"),
    ({"a-1": (np.zeros((2, 2)), np.zeros((2, 61), np.uint8))}, "descriptors"),
    ({"a-1": (np.zeros((2, 2)), np.zeros((2, 32), np.float32))}, "uint8"),
    ({"a-1": np.zeros((3, 2))}, "pair"),
    ({"a-1": None}, "pair"),
])
def test_blob_rejects_bad_keypoints(per_card, message):
    with pytest.raises(PokecardError, match=message):
        keypoints_blob(per_card)


# ---------- the DB ----------
def test_db_round_trip_through_add_and_remove(forged, tmp_path):
    _, scans, keypoints = forged
    ids = list(scans)
    db_dir = make_db(tmp_path / "db", ids[:4])
    assert Verifier.from_db(ReferenceDB.open(db_dir)) is None  # no keypoints yet
    report = add_keypoints_to_db(db_dir, {c: scans[c] for c in ids[:2]})
    assert (report["cards"], report["added"], report["skipped"]) == (2, 2, [])
    assert 10_000 < report["bytes_per_card"] < 20_000
    report = add_keypoints_to_db(db_dir, {c: scans[c] for c in ids[2:4]})  # merge
    assert report["cards"] == 4
    db = ReferenceDB.open(db_dir)
    assert db.manifest["extras"][KEYPOINTS_FILE]["cards"] == 4
    store = load_keypoints(db.read_extra(KEYPOINTS_FILE))
    np.testing.assert_array_equal(store[ids[3]][1], keypoints[ids[3]][1])
    # add a card to the DB: the keypoints change in the same commit (an update that forgets them is refused)
    with pytest.raises(PokecardError, match="must change with the cards"): add_cards(db_dir, np.ones((1, 8), np.float32), [ids[4]])
    add_cards(db_dir, np.ones((1, 8), np.float32), [ids[4]], extras_update=keypoints_update())
    assert len(load_keypoints(ReferenceDB.open(db_dir).read_extra(KEYPOINTS_FILE))) == 4  # the others are carried
    add_keypoints_to_db(db_dir, {ids[4]: scans[ids[4]]})
    # remove cards: their keypoints go in the same commit, so no stale keypoints are ever stored
    remove_cards(db_dir, [ids[0], ids[1]], extras_update=keypoints_update())
    verifier = Verifier.from_db(db_dir)
    assert ids[0] not in verifier.keypoints
    assert add_keypoints_to_db(db_dir, {})["cards"] == 3
    assert list(Verifier.from_db(ReferenceDB.open(db_dir)).keypoints) == ids[2:5]
    # replace: only the given cards
    assert add_keypoints_to_db(db_dir, {ids[2]: scans[ids[2]]}, replace=True, settings=KeypointSettings(max_keypoints=200))["cards"] == 1
    assert Verifier.from_db(db_dir).keypoints.settings.max_keypoints == 200


def test_add_keypoints_errors_and_skips(forged, tmp_path):
    _, scans, _ = forged
    ids = list(scans)
    db_dir = make_db(tmp_path / "db", ids[:3])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    report = add_keypoints_to_db(db_dir, {ids[0]: scans[ids[0]], ids[1]: tmp_path / "broken.jpg", ids[2]: np.zeros((4, 4, 3), np.uint8)})
    assert (report["cards"], report["skipped"]) == (1, [ids[1], ids[2]])
    with pytest.raises(PokecardError, match="not in the DB"):
        add_keypoints_to_db(db_dir, {"zz-1": scans[ids[0]]})
    with pytest.raises(PokecardError, match="replace=True"):
        add_keypoints_to_db(db_dir, {ids[0]: scans[ids[0]]}, settings=KeypointSettings(max_keypoints=100))
    with pytest.raises(PokecardError, match="no reference DB"):
        add_keypoints_to_db(tmp_path / "missing", {})


def test_corrupted_keypoints_file_fails_db_open_or_load(forged, tmp_path):
    _, scans, _ = forged
    ids = list(scans)
    db_dir = make_db(tmp_path / "db", ids[:2])
    add_keypoints_to_db(db_dir, {c: scans[c] for c in ids[:2]})
    path = db_dir / KEYPOINTS_FILE
    data = bytearray(path.read_bytes()); data[-5] ^= 0xFF; path.write_bytes(bytes(data))
    with pytest.raises(PokecardError, match="sha256"):
        ReferenceDB.open(db_dir)
    path.write_bytes(b"PKCKEYP1" + b"\x00" * (len(data) - 8))  # same size: passes a "fast" open, fails the format check
    with pytest.raises(PokecardError, match="keypoint"):
        Verifier.from_db(ReferenceDB.open(db_dir, checksums="fast"))


# ---------- verification and re-ranking ----------
def test_card_like_homographies():
    w, h = VERIFY_SIZE
    assert card_like(np.eye(3)) == (True, False)
    assert card_like(np.array([[-1, 0, w - 1], [0, -1, h - 1], [0, 0, 1]], float)) == (True, True)
    assert card_like(np.array([[-1, 0, w - 1], [0, 1, 0], [0, 0, 1]], float)) == (False, False)  # mirrored
    assert card_like(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], float))[0] is False  # transposed
    assert card_like(np.array([[1, 0, 0], [0, 1, 0], [0.01, 0, 1]], float))[0] is False  # strong perspective
    assert card_like(np.full((3, 3), np.nan)) == (False, False)


def test_match_card_degenerate_inputs():
    empty = (np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    some = (np.random.default_rng(0).uniform(0, 300, (50, 2)).astype(np.float32), np.random.default_rng(1).integers(0, 255, (50, 32), dtype=np.uint8))
    for a, b in ((empty, some), (some, empty), (empty, empty)):
        assert match_card(a, b) == {"matches": 0, "inliers": 0, "art_inliers": 0, "homography_ok": False, "rotated": False}
    random_result = match_card(some, (some[0][::-1].copy(), np.random.default_rng(2).integers(0, 255, (50, 32), dtype=np.uint8)))
    assert random_result["art_inliers"] < MIN_INLIERS


def test_verification_picks_the_printing_and_rejects_strangers(forged):
    cards, scans, keypoints = forged
    target = cards[0].card_id
    query = rectified_photo(simulate_crop(scans[target], 5, PhotoParams.preset("easy")))
    results = verify_candidates(query, list(scans), keypoints)
    best = max(results, key=lambda r: r["inliers"] if r["homography_ok"] else 0)
    assert best["card_id"] == target and best["verified"]
    strangers = [c.card_id for c in cards if c.artwork_id != cards[0].artwork_id]
    assert not any(r["verified"] for r in results if r["card_id"] in strangers), results
    hits = [Hit(c, 0.9 - 0.001 * i, i) for i, c in enumerate(strangers)]
    assert rerank(hits, verify_candidates(query, strangers, keypoints))[1] == "unknown"
    with pytest.raises(PokecardError, match="query"):
        verify_candidates(None, [target], keypoints)


def test_rerank_rules():
    hits = [("a", 0.80), ("b", 0.79), ("c", 0.78), ("d", 0.50)]
    def v(card_id, inliers, ok=True, art=None): return {"card_id": card_id, "inliers": inliers, "homography_ok": ok, "art_inliers": inliers if art is None else art}
    # re-ordered by inliers, unverified last in embedding order, unchecked hits after them
    assert rerank(hits, [v("a", 12), v("b", 5), v("c", 90)]) == ([hits[2], hits[0], hits[1], hits[3]], "match")
    # near-ties keep the embedding order
    assert rerank(hits, [v("a", 95), v("b", 100), v("c", 20)]) == (hits, "uncertain")
    assert rerank(hits, [v("a", 95), v("b", 100), v("c", 20)], tie_tolerance=0.0) == ([hits[1], hits[0], hits[2], hits[3]], "match")
    # frame-only inliers and bad homographies do not verify
    assert rerank(hits, [v("a", 60, art=2), v("b", 200, ok=False)]) == (hits, "unknown")
    # a wide margin keeps a verified top-1 first; the hint still speaks about the top card
    assert rerank(hits, [v("a", 50), v("b", 10)], margin_threshold=0.005) == (hits, "match")
    assert rerank(hits, [v("a", 20), v("b", 80)], margin_threshold=0.005) == (hits, "uncertain")
    # ... but a top-1 the geometry rejects gives way to a card that verifies, whatever the margin
    assert rerank(hits, [v("a", 5), v("b", 80)], margin_threshold=0.005) == ([hits[1], hits[0], hits[2], hits[3]], "match")
    assert rerank(hits, [v("zz", 50)]) == (hits, None)  # nothing of ours verified
    assert rerank([], []) == ([], None)


def test_verifier_decide_and_check(forged, tmp_path):
    cards, scans, keypoints = forged
    verifier = Verifier(load_keypoints(keypoints_blob(keypoints)), margin_threshold=0.05)
    target = cards[0].card_id
    query = rectified_photo(simulate_crop(scans[target], 6, PhotoParams.preset("easy")))
    others = [c for c in scans if c != target]
    hits = [Hit(others[0], 0.90, 0), Hit(target, 0.89, 1), Hit(others[1], 0.70, 2)]
    reordered, hint, checked = verifier.decide(query, hits, "match")  # a margin under 0.05: verified even after a "match"
    assert reordered[0].card_id == target and checked is not None and hint in ("match", "uncertain")
    assert all(isinstance(h, Hit) for h in reordered) and sorted(reordered) == sorted(hits)
    wide = [Hit(others[0], 0.95, 0), Hit(target, 0.5, 1)]
    assert verifier.decide(query, wide, "match") == (wide, "match", None)
    assert verifier.check(query, wide)[0][0].card_id == target  # whatever the margin
    assert verifier.decide(query, [], "match") == ([], "match", None) and verifier.check(query, []) == ([], None, [], 0.0)
    turned = np.ascontiguousarray(query[::-1, ::-1])
    assert verifier.decide(turned, hits, "match")[0][0].card_id == target  # the wrong reading still verifies (turned by 180°)
    with pytest.raises(PokecardError, match="max_candidates"):
        Verifier({}, max_candidates=0)


def test_no_torch_import():
    code = "import sys, pokecard.verify; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ---------- real data ----------
@pytest.fixture(scope="module")
def xy12():
    root = data_root()
    if root is None: pytest.skip("real data (../shared/data) absent")
    scans = {p.stem: load_image(p) for p in sorted((root / "cards" / "xy12").glob("*.webp"))}
    return root, load_keypoints(keypoints_blob({c: KeypointSettings().extract(s, reference=True) for c, s in scans.items()}))


@pytest.mark.parametrize("name", ["xy12-20_tiltleft", "xy12-20_tiltright"])
def test_real_magmar_photo_verifies_against_xy12(xy12, name):
    root, keypoints = xy12
    query = rectified_photo(load_image(root / "photos" / f"{name}.jpg"))
    results = {r["card_id"]: r for r in verify_candidates(query, list(keypoints), keypoints)}
    assert results["xy12-20"]["verified"] and results["xy12-20"]["art_inliers"] >= 5 * MIN_INLIERS
    assert [c for c, r in results.items() if r["verified"]] == ["xy12-20"]
    hits = [("xy12-10", 0.9), ("xy12-19", 0.89), ("xy12-9", 0.88)]  # other Fire cards: the same frame, not the card
    assert rerank(hits, [results[c] for c, _ in hits])[1] == "unknown"


def test_real_bulbasaur_printings():
    root = data_root()
    if root is None: pytest.skip("real data (../shared/data) absent")
    scans = {p.stem: np.asarray(load_image(p)) for p in sorted((root / "cards" / "bulbasaur").glob("*.jpg"))}
    keypoints = {c: KeypointSettings().extract(s, reference=True) for c, s in scans.items()}
    right = 0
    for i, (card_id, scan) in enumerate(list(scans.items())[::3]):
        query = rectified_photo(simulate_crop(scan, 200 + i, PhotoParams.preset("medium")))
        results = verify_candidates(query, list(scans), keypoints)
        right += max(results, key=lambda r: r["inliers"] if r["homography_ok"] else 0)["card_id"] == card_id
    assert right >= 4  # of 5
