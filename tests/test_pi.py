"Recognition on the Pi: torch-free import, the JSON format, preprocessing, orientation, tight crops, DB/model mismatches, corrupt images, CLI exit codes, Hailo absent, camera smoothing, and the real photos in ../shared/data (skipped when absent)."
import contextlib, io, json, os, shutil, subprocess, sys, types
from pathlib import Path
from types import SimpleNamespace
import numpy as np, pytest, cv2
from PIL import Image
from pokecard.core import PokecardError, file_sha256
from pokecard.images import load_image, to_model_input
from pokecard.finder import rectify, rotate_corners_180, quad_aspect, quad_area
from pokecard.refdb import build_db, set_thresholds, write_extra
from pokecard.forge import forge_catalog, render_card
from pokecard.photos import PhotoParams, simulate_crop, simulate_scene
from pokecard import pi
from pokecard.verify import add_keypoints_to_db
from pokecard.pi import CardTracker, Candidate, HailoEmbedder, LATENCY_STEPS, OVERLAY_COLOURS, OnnxEmbedder, RecognizedCard, Recognizer, TrackedCard, bench_latency_main, camera_main, draw_overlay, model_entry, reading_changes, recognize_main, to_dict, to_json
from pokecard.testing import thumbnail_model

PREPROCESSING = {"fn": "pokecard.images.to_model_input", "size": 224, "resample": "bilinear"}
FORBIDDEN = ("torch", "torchvision", "timm", "transformers", "sklearn", "umap", "matplotlib", "pandas", "onnx", "scipy")


def data_root():
    root = Path(os.environ.get("POKECARD_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return root if (root / "photos").is_dir() and (root / "cards" / "xy12").is_dir() else None


def make_db(db_dir, model_path, scans, metadata=None, kind="onnx-fp32", embeddings=None, preprocessing=PREPROCESSING, add_model=True):
    "A reference DB of `scans` (card_id -> image) embedded with `model_path`, the model stored inside."
    if embeddings is None: embeddings = OnnxEmbedder(model_path).embed(np.stack([to_model_input(s) for s in scans.values()]))
    build_db(db_dir, embeddings, list(scans), metadata or {}, preprocessing=preprocessing,
             model_info={"file": "model.onnx", "sha256": file_sha256(model_path), "kind": kind})
    if add_model: write_extra(db_dir, "model.onnx", Path(model_path).read_bytes(), {"role": "model"})
    return Path(db_dir)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pi")
    cards = forge_catalog(5, 2, seed=1)
    scans = {c.card_id: render_card(c) for c in cards}
    metadata = {c.card_id: {"name": c.name, "set_id": c.set_id, "number": str(c.number)} for c in cards}
    model = thumbnail_model(folder / "thumbnail.onnx")
    db = make_db(folder / "db", model, scans, metadata)
    ids = list(scans)
    photo, truth = simulate_scene([scans[ids[0]], scans[ids[2]]], 3, PhotoParams.preset("easy"))
    photo_path = folder / "scene.jpg"
    photo.save(photo_path, quality=92)
    scan_path = folder / f"{ids[1]}.png"
    scans[ids[1]].save(scan_path)
    verified_db = folder / "verified-db"  # the same DB with the reference keypoints: close calls get verified
    shutil.copytree(db, verified_db)
    add_keypoints_to_db(verified_db, scans)
    return SimpleNamespace(folder=folder, scans=scans, ids=ids, metadata=metadata, model=model, db=db, recognizer=Recognizer(db), verified_db=verified_db,
                           photo=np.asarray(photo), truth=[np.asarray(t, float) for t in truth], truth_ids=[ids[0], ids[2]],
                           photo_path=photo_path, scan_path=scan_path)


def nearest(cards, corners):
    "The recognised card whose centre is nearest to the true card's."
    return min(cards, key=lambda c: np.abs(c.corners.mean(0) - corners.mean(0)).max())


def run_cli(main, argv):
    "(exit code, stdout, stderr) of a CLI function; argparse's SystemExit becomes its code."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: code = main(argv)
        except SystemExit as e: code = e.code
    return code, out.getvalue(), err.getvalue()


# --- the Pi's imports ---------------------------------------------------------------------------------------------------

def test_import_and_recognition_do_not_import_torch(demo):
    code = f"""
import sys
FORBIDDEN = {FORBIDDEN!r}
def loaded(): return sorted(m for m in sys.modules if m.split('.')[0] in FORBIDDEN)
import pokecard.pi as pi
assert not loaded(), loaded()
recognizer = pi.Recognizer(sys.argv[1], verification="always")
result = recognizer.recognize(sys.argv[2])
assert len(result.cards) == 2 and recognizer.verifier is not None and all(c.verification for c in result.cards), result
assert not loaded(), loaded()
print(sorted(m for m in sys.modules if m.startswith('pokecard.')))
"""
    done = subprocess.run([sys.executable, "-c", code, str(demo.verified_db), str(demo.photo_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    modules = set(eval(done.stdout.strip().splitlines()[-1]))
    assert modules <= {"pokecard.core", "pokecard.images", "pokecard.finder", "pokecard.refdb", "pokecard.decision", "pokecard.metrics",
                       "pokecard.verify", "pokecard.cardhash", "pokecard.pi", "pokecard.pi.embedders", "pokecard.pi.recognizer", "pokecard.pi.camera", "pokecard.pi.cli", "pokecard.export"}, modules  # export: the torch-free embedder_interface (tests/test_export.py)


# --- recognition --------------------------------------------------------------------------------------------------------

def test_json_format_is_exactly_the_architectures(demo):
    result = demo.recognizer.recognize(demo.photo_path, top_k=3)
    record = json.loads(to_json(result))
    assert list(record) == ["image", "cards", "timing_ms"]
    assert record["image"] == str(demo.photo_path)
    assert list(record["timing_ms"]) == list(LATENCY_STEPS) and all(isinstance(v, float) for v in record["timing_ms"].values())
    assert len(record["cards"]) == 2
    for card in record["cards"]:
        assert list(card) == ["corners", "decision", "top", "outline"]  # the architecture's keys, then the one added (issue 16)
        assert card["outline"] == "found"
        assert np.asarray(card["corners"]).shape == (4, 2)
        assert card["decision"] in ("match", "uncertain", "unknown")
        assert len(card["top"]) == 3
        for candidate in card["top"]:
            assert list(candidate) == ["card_id", "name", "set_id", "number", "similarity"]
            assert isinstance(candidate["similarity"], float) and -1 <= candidate["similarity"] <= 1
            assert candidate["name"] == demo.metadata[candidate["card_id"]]["name"] and isinstance(candidate["number"], str)
        similarities = [c["similarity"] for c in card["top"]]
        assert similarities == sorted(similarities, reverse=True)
    assert json.loads(to_json(demo.recognizer.recognize(demo.photo)))["image"] is None  # an array has no path
    assert "\n" not in to_json(result)  # JSON Lines


def test_scene_cards_are_read_with_corners_as_printed(demo):
    result = demo.recognizer.recognize(demo.photo)
    for corners, card_id in zip(demo.truth, demo.truth_ids):
        card = nearest(result.cards, corners)
        assert card.top[0].card_id == card_id and card.decision == "match"
        assert np.abs(card.corners - corners).max() < 6


def test_upside_down_photo_is_resolved(demo):
    h, w = demo.photo.shape[:2]
    result = demo.recognizer.recognize(np.ascontiguousarray(demo.photo[::-1, ::-1]))
    for corners, card_id in zip(demo.truth, demo.truth_ids):
        turned = np.array([w - 1, h - 1]) - corners
        card = nearest(result.cards, turned)
        assert card.top[0].card_id == card_id and card.rotated
        assert np.abs(card.corners - turned).max() < 6  # TL of the card as printed, now near the bottom right


def test_upside_down_tight_crop(demo):
    scan = np.asarray(demo.scans[demo.ids[3]])
    card = demo.recognizer.recognize(np.ascontiguousarray(scan[::-1, ::-1])).cards[0]
    h, w = scan.shape[:2]
    assert card.rotated and card.full_frame and card.top[0].card_id == demo.ids[3]
    np.testing.assert_allclose(card.corners, [[w - 1, h - 1], [0, h - 1], [0, 0], [w - 1, 0]])


@pytest.mark.parametrize("kind", ["path", "pil", "array", "rgba"])
def test_tight_crop_is_the_whole_card(demo, kind):
    card_id = demo.ids[1]
    image = {"path": demo.scan_path, "pil": demo.scans[card_id], "array": np.asarray(demo.scans[card_id]),
             "rgba": np.asarray(demo.scans[card_id].convert("RGBA"))}[kind]
    result = demo.recognizer.recognize(image)
    assert len(result.cards) == 1 and result.cards[0].full_frame and not result.cards[0].rotated
    assert result.cards[0].top[0].card_id == card_id and result.cards[0].top[0].similarity > 0.999
    assert result.size == demo.scans[card_id].size


def test_user_crop_with_camera_effects(demo):
    card_id = demo.ids[4]
    crop = simulate_crop(demo.scans[card_id], 0, PhotoParams.preset("easy"))
    result = demo.recognizer.recognize(crop)
    assert len(result.cards) == 1 and result.cards[0].top[0].card_id == card_id


def test_model_input_is_to_model_input_of_the_rectified_card(demo, monkeypatch):
    def batches_of(recognizer):
        batches = []
        original = recognizer.embedder.embed
        monkeypatch.setattr(recognizer.embedder, "embed", lambda batch: batches.append(batch.copy()) or original(batch))
        return batches
    rgb = np.asarray(load_image(demo.photo_path))
    def rectified_cards(result):
        return [rectify(rgb, rotate_corners_180(card.corners) if card.rotated else card.corners) for card in result.cards]  # the finder's order
    # readings="both": one batch, both readings of every card
    recognizer = Recognizer(demo.db, readings="both")
    batches = batches_of(recognizer)
    result = recognizer.recognize(demo.photo_path)
    assert len(batches) == 1 and len(batches[0]) == 2 * len(result.cards) == 4
    upright = np.stack([batches[0][0], batches[0][2]])
    for i, rectified in enumerate(rectified_cards(result)):
        np.testing.assert_array_equal(batches[0][2 * i], to_model_input(rectified))
        np.testing.assert_array_equal(batches[0][2 * i + 1], to_model_input(np.ascontiguousarray(rectified[::-1, ::-1])))
    # the default: every card as found in one batch; the turned reading only of cards whose first reading is no match (none here)
    recognizer = Recognizer(demo.db)
    batches = batches_of(recognizer)
    again = recognizer.recognize(demo.photo_path)
    assert all(card.decision == "match" for card in again.cards) and len(batches) == 1
    np.testing.assert_array_equal(batches[0], upright)
    assert [c.top[0].card_id for c in again.cards] == [c.top[0].card_id for c in result.cards]


def test_turned_reading_only_when_needed(demo, monkeypatch):
    recognizer = Recognizer(demo.db)
    sizes = []
    original = recognizer.embedder.embed
    monkeypatch.setattr(recognizer.embedder, "embed", lambda batch: sizes.append(len(batch)) or original(batch))
    result = recognizer.recognize(np.ascontiguousarray(demo.photo[::-1, ::-1]))  # upside down: the first reading is no match
    assert sizes == [2, 2] and all(card.rotated for card in result.cards)
    with pytest.raises(PokecardError, match="readings"): Recognizer(demo.db, readings="one")


def test_thresholds_come_from_the_db(demo, tmp_path):
    db = make_db(tmp_path / "db", demo.model, demo.scans, demo.metadata)
    set_thresholds(db, {"match_similarity": 0.99999, "match_margin": 0.0, "uncertain_similarity": 0.99})
    result = Recognizer(db).recognize(demo.photo)
    assert {c.decision for c in result.cards} <= {"uncertain", "unknown"}
    assert Recognizer(db, thresholds={"match_similarity": 0.5, "match_margin": 0.0, "uncertain_similarity": 0.1}).recognize(demo.scan_path).cards[0].decision == "match"
    set_thresholds(db, {"match": 0.8})
    with pytest.raises(PokecardError, match="thresholds lack"):
        Recognizer(db)


def test_one_card_db_has_no_margin(demo, tmp_path):
    card_id = demo.ids[1]
    db = make_db(tmp_path / "db", demo.model, {card_id: demo.scans[card_id]}, demo.metadata)
    card = Recognizer(db).recognize(demo.scan_path, top_k=5).cards[0]
    assert [c.card_id for c in card.top] == [card_id] and card.decision == "match"


@pytest.mark.parametrize("bad", [None, 3, "a string is a path that does not exist", np.zeros((5, 5, 3), np.uint8), np.zeros((64, 64, 3), np.float32)])
def test_bad_images_raise_a_clear_error(demo, bad):
    with pytest.raises(PokecardError):
        demo.recognizer.recognize(bad)


@pytest.mark.parametrize("top_k", [0, -1, 2.5, "5"])
def test_bad_top_k(demo, top_k):
    with pytest.raises(PokecardError, match="top_k"):
        demo.recognizer.recognize(demo.scan_path, top_k=top_k)


# --- DB and model must agree --------------------------------------------------------------------------------------------

def test_model_replaced_in_the_db(demo, tmp_path):
    other = thumbnail_model(tmp_path / "other.onnx", grid=4)
    db = make_db(tmp_path / "db", demo.model, demo.scans)
    write_extra(db, "model.onnx", other.read_bytes())  # checksums consistent, but not the model the vectors came from
    with pytest.raises(PokecardError, match="sha256.*vectors were made with"):
        Recognizer(db)


def test_model_file_corrupted(demo, tmp_path):
    db = make_db(tmp_path / "db", demo.model, demo.scans)
    (db / "model.onnx").write_bytes(b"garbage" + (db / "model.onnx").read_bytes()[7:])
    with pytest.raises(PokecardError, match="sha256"):
        Recognizer(db)  # checksums="full": the DB's own checksum
    with pytest.raises(PokecardError, match="sha256"):
        Recognizer(db, checksums="none")  # the model's sha256 is checked regardless


def test_dimension_mismatch(demo, tmp_path):
    vectors = np.random.default_rng(0).standard_normal((len(demo.scans), 48)).astype(np.float32)
    db = make_db(tmp_path / "db", demo.model, demo.scans, embeddings=vectors)
    with pytest.raises(PokecardError, match="192-dim.*48-dim"):
        Recognizer(db)


def test_db_without_its_model(demo, tmp_path):
    db = make_db(tmp_path / "db", demo.model, demo.scans, add_model=False)
    with pytest.raises(PokecardError, match="lacks its model file"):
        Recognizer(db)


def test_preprocessing_mismatch(demo, tmp_path):
    db = make_db(tmp_path / "db", demo.model, demo.scans, preprocessing={**PREPROCESSING, "size": 160})
    with pytest.raises(PokecardError, match="preprocessing size is 160"):
        Recognizer(db)
    db = make_db(tmp_path / "db2", demo.model, demo.scans, preprocessing={"fn": "torchvision.transforms.Resize"})
    with pytest.raises(PokecardError, match="torchvision"):
        Recognizer(db)


def test_wrong_kind_and_backend(demo, tmp_path):
    db = make_db(tmp_path / "db", demo.model, demo.scans, kind="hailo")
    with pytest.raises(PokecardError, match="onnx backend needs an ONNX model"):
        Recognizer(db)
    with pytest.raises(PokecardError, match="backend 'tpu'"):
        Recognizer(demo.db, backend="tpu")


def test_not_an_onnx_embedding_model(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(PokecardError, match="ONNX Runtime cannot load"):
        OnnxEmbedder(tmp_path / "x.onnx")


def test_not_a_db(tmp_path):
    with pytest.raises(PokecardError, match="no reference DB"):
        Recognizer(tmp_path / "missing")


# --- Hailo --------------------------------------------------------------------------------------------------------------

def hailo_installed():
    try: import hailo_platform  # noqa: F401
    except ImportError: return False
    return True


@pytest.mark.skipif(hailo_installed(), reason="hailo_platform is installed here")
def test_hailo_absent_says_how_to_install(demo):
    with pytest.raises(PokecardError, match="hailo-all"):
        Recognizer(demo.db, backend="hailo")
    with pytest.raises(PokecardError, match="hailo-all"):
        HailoEmbedder(demo.folder / "model.hef")
    from pokecard.cli import main
    code, _, err = run_cli(main, ["recognize", str(demo.scan_path), "--db", str(demo.db), "--backend", "hailo"])
    assert code == 2 and "hailo-all" in err


def test_hailo_model_entry(demo):
    manifest = json.loads((demo.db / "manifest.json").read_text())
    with pytest.raises(PokecardError, match="compile-hailo"):
        model_entry(manifest, "hailo")
    hef = {"file": "model.hef", "sha256": "1" * 64}
    assert model_entry({**manifest, "model": {**manifest["model"], "hef": hef}}, "hailo") == {**hef, "kind": "hailo"}
    assert model_entry({**manifest, "model": {**manifest["model"], "kind": "hailo", "file": "m.hef"}}, "hailo")["file"] == "m.hef"


def test_hailort_errors_are_reported(monkeypatch, tmp_path):
    "Up to the call into HailoRT: a device that cannot be opened gives a clear error."
    fake = types.ModuleType("hailo_platform")
    def no_device(*args, **kwargs): raise RuntimeError("HAILO_OUT_OF_PHYSICAL_DEVICES")
    fake.VDevice, fake.FormatType = no_device, SimpleNamespace(UINT8="uint8", FLOAT32="float32")
    monkeypatch.setitem(sys.modules, "hailo_platform", fake)
    with pytest.raises(PokecardError, match="HAILO_OUT_OF_PHYSICAL_DEVICES.*hailortcli"):
        HailoEmbedder(tmp_path / "model.hef")


# --- geometric verification ----------------------------------------------------------------------------------------------

def test_verification_corrects_an_embedding_that_names_the_wrong_card(demo, tmp_path):
    "A DB whose embeddings of two different cards are swapped: the embedding alone names the wrong card, the keypoints the right one."
    first = demo.ids[0]
    second = next(c for c in demo.ids if demo.metadata[c]["name"] != demo.metadata[first]["name"])
    ids = [first, second] + [c for c in demo.ids if c not in (first, second)][:2]
    scans = {c: demo.scans[c] for c in ids}
    embeddings = OnnxEmbedder(demo.model).embed(np.stack([to_model_input(s) for s in scans.values()]))[[1, 0, 2, 3]]
    db = make_db(tmp_path / "db", demo.model, scans, {c: demo.metadata[c] for c in ids}, embeddings=embeddings)
    add_keypoints_to_db(db, scans)
    photo = simulate_crop(demo.scans[first], 5, PhotoParams.preset("easy"))
    plain = Recognizer(db, verification="off").recognize(photo).cards[0]
    verified = Recognizer(db, verification="always").recognize(photo).cards[0]
    assert plain.top[0].card_id == second and plain.verification is None
    assert verified.top[0].card_id == first and verified.decision == "match"
    assert verified.verification["hint"] == "match" and verified.verification["inliers"][first] >= 10 > verified.verification["inliers"][second]
    assert {c.card_id for c in verified.top} == {c.card_id for c in plain.top}  # re-ranked, nothing lost


def test_verification_says_unknown_for_a_card_absent_from_the_db(demo):
    stranger = render_card(forge_catalog(3, 1, seed=7)[0])
    card = Recognizer(demo.verified_db, verification="always").recognize(simulate_crop(stranger, 4, PhotoParams.preset("easy"))).cards[0]
    assert card.decision == "unknown" and card.verification["hint"] == "unknown"
    assert max(card.verification["inliers"].values()) < 10


def test_auto_verifies_only_close_calls(demo):
    auto = Recognizer(demo.verified_db)
    assert auto.verification == "auto" and auto.verifier.margin_threshold == auto.thresholds["match_margin"]
    clear = auto.recognize(demo.scan_path).cards[0]  # a clean scan of a DB card: the embedding alone says match
    assert clear.decision == "match" and clear.verification is None
    everything = Recognizer(demo.verified_db, verify_margin=2.0).recognize(demo.scan_path)  # a margin no pair reaches: verify all
    assert everything.cards[0].verification is not None and everything.cards[0].top[0].card_id == demo.ids[1]
    assert list(everything.timing_ms) == list(LATENCY_STEPS)


def test_verification_modes_and_dbs_without_keypoints(demo):
    assert Recognizer(demo.db).verifier is None and Recognizer(demo.db).verification == "off"  # nothing to verify with (logged)
    assert Recognizer(demo.verified_db, verification="off").verifier is None
    with pytest.raises(PokecardError, match="verification='sometimes'"): Recognizer(demo.verified_db, verification="sometimes")
    with pytest.raises(PokecardError, match="verify_margin"): Recognizer(demo.verified_db, verify_margin=-1)


def test_verify_flag_of_the_cli(demo):
    code, out, _ = run_cli(recognize_main, [str(demo.scan_path), "--db", str(demo.verified_db), "--verify", "always"])
    assert code == 0 and "verified:" in out and "inliers" in out
    code, out, _ = run_cli(recognize_main, [str(demo.scan_path), "--db", str(demo.verified_db), "--verify", "off"])
    assert code == 0 and "verified" not in out
    assert run_cli(recognize_main, [str(demo.scan_path), "--db", str(demo.verified_db), "--verify", "maybe"])[0] == 2
    code, out, _ = run_cli(recognize_main, [str(demo.scan_path), "--db", str(demo.verified_db), "--verify-margin", "2"])  # every card verified
    assert code == 0 and "verified:" in out


# --- command line -------------------------------------------------------------------------------------------------------

def test_recognize_cli_json_lines_and_skips_corrupt_images(demo, tmp_path):
    corrupt, empty, missing = tmp_path / "corrupt.jpg", tmp_path / "empty.png", tmp_path / "missing.jpg"
    corrupt.write_bytes(demo.photo_path.read_bytes()[:2000])
    empty.write_bytes(b"")
    code, out, err = run_cli(recognize_main, [str(demo.photo_path), str(corrupt), str(empty), str(missing), str(demo.scan_path),
                                              "--db", str(demo.db), "--json", "--top-k", "2"])
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in records] == [str(demo.photo_path), str(demo.scan_path)]
    assert all(len(card["top"]) == 2 for r in records for card in r["cards"])
    for path, reason in ((corrupt, "corrupt or truncated"), (empty, "empty file"), (missing, "no such file")):
        assert f"skipped {path}: {reason}" in err, err


def test_recognize_cli_human_readable_and_folders(demo, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(demo.photo_path.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    code, out, err = run_cli(recognize_main, [str(folder), "--db", str(demo.db)])
    assert code == 0 and "a.jpg: 2 card(s)" in out and "card 1: match" in out and "notes" not in out + err


def test_recognize_cli_exit_codes(demo, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff nothing")
    assert run_cli(recognize_main, [str(corrupt), "--db", str(demo.db)])[0] == 1  # no image processed
    assert run_cli(recognize_main, [str(demo.scan_path)])[0] == 2  # --db missing: usage
    assert run_cli(recognize_main, [str(demo.scan_path), "--db", str(demo.db), "--top-k", "0"])[0] == 2
    assert run_cli(recognize_main, ["--db", str(demo.db)])[0] == 2  # no image
    from pokecard.cli import main
    code, _, err = run_cli(main, ["recognize", str(demo.scan_path), "--db", str(tmp_path / "nope")])
    assert code == 2 and "no reference DB" in err
    code, out, _ = run_cli(main, ["recognize", str(demo.scan_path), "--db", str(demo.db), "--json"])
    assert code == 0 and json.loads(out)["cards"][0]["top"][0]["card_id"] == demo.ids[1]


def test_bench_latency_cli(demo, tmp_path):
    code, out, err = run_cli(bench_latency_main, ["--db", str(demo.db), str(demo.scan_path), str(tmp_path / "missing.jpg"), "--repeat", "2", "--json"])
    assert code == 0 and "missing.jpg" in err
    report = json.loads(out)
    assert list(report["steps"]) == list(LATENCY_STEPS) and report["steps"]["total"]["runs"] == 2
    assert set(report["metrics"]) == {"recognize_ms_p50", "embed_ms_p50", "search_ms_p50", "verify_ms_p50", "verify_ms_p95"}
    code, out, _ = run_cli(bench_latency_main, ["--db", str(demo.db), str(demo.scan_path), "--repeat", "1"])
    assert code == 0 and "p50 ms" in out and "embed" in out
    assert run_cli(bench_latency_main, ["--db", str(demo.db), str(tmp_path / "missing.jpg")])[0] == 1
    assert run_cli(bench_latency_main, ["--db", str(demo.db), str(demo.scan_path), "--repeat", "0"])[0] == 2


def test_camera_cli_replays_a_video_headless(demo, tmp_path):
    video = tmp_path / "desk.avi"
    h, w = demo.photo.shape[:2]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
    assert writer.isOpened()
    for shift in range(4): writer.write(cv2.cvtColor(np.roll(demo.photo, 2 * shift, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    code, out, err = run_cli(camera_main, ["--db", str(demo.db), "--video", str(video), "--headless", "--smooth", "3"])
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and all(": match " in line and "(" in line for line in lines), out  # two cards, announced once each
    assert {line.split()[3] for line in lines} == set(demo.truth_ids)
    with pytest.raises(PokecardError, match="no video file"):
        camera_main(["--db", str(demo.db), "--video", str(tmp_path / "none.avi"), "--headless"])
    assert run_cli(camera_main, ["--db", str(demo.db), "--smooth", "0"])[0] == 2


# --- smoothing and overlay (pure functions) ----------------------------------------------------------------------------

SQUARE = np.array([[0, 0], [63, 0], [63, 88], [0, 88]], float) * 3


def card(corners, card_id, similarity=0.9, decision="match"):
    return RecognizedCard(np.asarray(corners, float), decision, [Candidate(card_id, f"name {card_id}", "s", "1", similarity)] if card_id else [], False, 1.0, False)


def test_tracker_follows_a_moving_card_and_ignores_a_flicker():
    tracker = CardTracker(smooth=5)
    readings = ["a", "a", "b", "a", "a", "a", "b", "a"]
    frames = [tracker.update([card(SQUARE + [8 * i, 4 * i], card_id)]) for i, card_id in enumerate(readings)]
    assert {t.track_id for frame in frames for t in frame} == {1}  # one card all along
    assert [f[0].decision for f in frames] == ["pending", "pending", "pending", "match", "match", "match", "match", "match"]
    assert all(f[0].card_id == "a" for f in frames[3:])
    np.testing.assert_allclose(frames[-1][0].corners, SQUARE + [56, 28])


def test_tracker_smooth_one_is_immediate_and_cards_are_told_apart():
    tracker = CardTracker(smooth=1)
    far = SQUARE + [1000, 0]
    first = tracker.update([card(SQUARE, "a"), card(far, "b")])
    second = tracker.update([card(far + 2, "b"), card(SQUARE + 2, "c", 0.7, "uncertain")])
    assert [(t.track_id, t.card_id, t.decision) for t in first] == [(1, "a", "match"), (2, "b", "match")]
    assert sorted((t.track_id, t.card_id, t.decision) for t in second) == [(1, "c", "uncertain"), (2, "b", "match")]


def test_tracker_unknown_and_ties_go_cautious():
    tracker = CardTracker(smooth=4)
    for decision in ("match", "uncertain", "match", "uncertain"): frame = tracker.update([card(SQUARE, "a", 0.8, decision)])
    assert frame[0].decision == "uncertain" and frame[0].card_id == "a" and frame[0].votes == 4
    tracker = CardTracker(smooth=3)
    for card_id in ("x", "y", "z"): frame = tracker.update([card(SQUARE, card_id, 0.2, "unknown")])
    assert frame[0].decision == "unknown" and frame[0].card_id is None
    assert tracker.update([card(SQUARE, None, 0.0, "unknown")])[0].decision == "unknown"  # no candidates at all


def test_tracker_drops_missing_cards_and_new_cards_get_new_ids():
    tracker = CardTracker(smooth=2, max_misses=1)
    tracker.update([card(SQUARE, "a")])
    assert tracker.update([]) == [] and len(tracker.tracks) == 1
    assert tracker.update([]) == [] and tracker.tracks == []
    assert tracker.update([card(SQUARE, "a")])[0].track_id == 2
    with pytest.raises(PokecardError, match="smooth"):
        CardTracker(smooth=0)


def test_overlay_draws_without_touching_the_frame():
    frame = np.zeros((400, 600, 3), np.uint8)
    cards = [TrackedCard(1, SQUARE + [10, 40], "a", "Flabébé", 0.91, "match", 3, 3),
             TrackedCard(2, SQUARE + [300, 40], None, None, float("nan"), "pending", 1, 1)]
    drawn = draw_overlay(frame, cards)
    assert not frame.any() and drawn.shape == frame.shape
    assert tuple(drawn[200, 10]) == OVERLAY_COLOURS["match"] and tuple(drawn[200, 300]) == OVERLAY_COLOURS["pending"]
    assert (drawn[:40] == OVERLAY_COLOURS["match"]).all(-1).any()  # the label above the card
    assert pi.overlay_label(cards[0]) == "Flabébé 0.91" and __import__("pokecard.pi.camera", fromlist=["_ascii"])._ascii("Flabébé") == "Flabebe"


def test_reading_changes_are_announced_once():
    announced = {}
    pending = TrackedCard(1, SQUARE, None, None, float("nan"), "pending", 1, 1)
    matched = TrackedCard(1, SQUARE, "a", "Alpha", 0.9, "match", 3, 3)
    assert reading_changes([pending], announced) == []
    assert reading_changes([matched], announced) == ["card #1: match a Alpha (0.900, 3/3 frames)"]
    assert reading_changes([matched], announced) == []
    assert len(reading_changes([TrackedCard(1, SQUARE, "b", "Beta", 0.9, "match", 3, 3)], announced)) == 1


# --- the real photos ----------------------------------------------------------------------------------------------------

def test_real_photos_give_one_card_with_sensible_corners(tmp_path):
    root = data_root()
    if root is None: pytest.skip("../shared/data is absent")
    scans = {p.stem: load_image(p) for p in sorted((root / "cards" / "xy12").glob("*.webp"))[:7]}
    scans["xy12-20"] = load_image(root / "cards" / "xy12" / "xy12-20.webp")
    model = thumbnail_model(tmp_path / "thumbnail.onnx")
    recognizer = Recognizer(make_db(tmp_path / "db", model, scans))
    for name in ("xy12-20_tiltleft", "xy12-20_tiltright"):
        path = root / "photos" / f"{name}.jpg"
        result = recognizer.recognize(path)
        w, h = result.size
        assert len(result.cards) == 1, name
        card = result.cards[0]
        assert not card.full_frame and card.finder_score > 0.5
        assert (card.corners >= -2).all() and (card.corners[:, 0] <= w + 1).all() and (card.corners[:, 1] <= h + 1).all()
        assert 0.02 < quad_area(card.corners) / (w * h) < 0.6
        assert abs(np.log(quad_aspect(card.corners) / (63 / 88))) < np.log(1.25)
        assert len(card.top) == 5 and card.decision in ("match", "uncertain", "unknown")  # a stand-in model: identity not asserted
    scan = recognizer.recognize(root / "cards" / "xy12" / "xy12-20.webp").cards[0]  # a real scan is a tight crop
    assert scan.full_frame and scan.top[0].card_id == "xy12-20" and scan.top[0].similarity > 0.999


# --- no card found, tiny photos, bad models, CLI hints (issue 16) ---------------------------------------------------------

from pokecard.pi import OUTLINES, format_result


def empty_table(seed=0, size=(480, 640)):
    "A photo-like frame with no card: a lit table (gradient) with sensor noise, 4:3."
    rows, cols = np.mgrid[0:size[0], 0:size[1]]
    table = np.stack([30 + cols / size[1] * 200, 50 + rows / size[0] * 150, np.full(size, 120.0)], -1)
    return np.clip(table + np.random.default_rng(seed).normal(0, 6, table.shape), 0, 255).astype(np.uint8)


def flat_colour(seed=0, size=(480, 640)):
    "A flat grey frame with a little sensor noise (a lens cap, a wall)."
    return np.clip(128 + np.random.default_rng(seed).normal(0, 4, (*size, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("frame", [empty_table, flat_colour])
def test_no_card_found_is_said_in_the_result_the_json_and_the_text(demo, frame):
    "The finder finds no outline: the whole frame is read, and every output says so (old code: indistinguishable from a tight crop)."
    result = demo.recognizer.recognize(frame())
    assert len(result.cards) == 1
    card = result.cards[0]
    assert (card.outline, card.full_frame, card.finder_score) == ("whole_image", True, 0.0)
    record = json.loads(to_json(result))
    assert list(record["cards"][0]) == ["corners", "decision", "top", "outline"] and record["cards"][0]["outline"] == "whole_image"
    assert "no card outline found; read the whole image as one card" in format_result(result)


def test_tight_crop_and_scene_outlines(demo):
    "A tight crop: the frame's edges are the outline ('frame'); a desk photo: outlines found in it ('found'). Neither prints the no-card line."
    tight = demo.recognizer.recognize(demo.scan_path)
    assert [c.outline for c in tight.cards] == ["frame"] and json.loads(to_json(tight))["cards"][0]["outline"] == "frame"
    scene = demo.recognizer.recognize(demo.photo_path)
    assert [c.outline for c in scene.cards] == ["found", "found"]
    for result in (tight, scene): assert OUTLINES["whole_image"] not in format_result(result)
    assert set(OUTLINES) == {"found", "frame", "whole_image"}


def old_to_json(result):
    "The JSON of the architecture, exactly as before the outline field (the byte-compatibility reference)."
    return json.dumps({"image": result.image,
                       "cards": [{"corners": [[round(float(x), 1), round(float(y), 1)] for x, y in card.corners], "decision": card.decision,
                                  "top": [{"card_id": c.card_id, "name": c.name, "set_id": c.set_id, "number": c.number,
                                           "similarity": round(float(c.similarity), 4)} for c in card.top]} for card in result.cards],
                       "timing_ms": {step: round(float(ms), 2) for step, ms in result.timing_ms.items()}}, ensure_ascii=False)


def test_json_is_byte_compatible_apart_from_the_added_outline(demo):
    for image in (demo.photo_path, demo.scan_path, empty_table()):
        result = demo.recognizer.recognize(image)
        record = json.loads(to_json(result))
        for card in record["cards"]: del card["outline"]
        assert json.dumps(record, ensure_ascii=False) == old_to_json(result)


def test_recognize_cli_says_no_card_found(demo, tmp_path):
    photo = tmp_path / "table.jpg"
    Image.fromarray(empty_table()).save(photo, quality=95)
    code, out, _ = run_cli(recognize_main, [str(photo), str(demo.scan_path), "--db", str(demo.db)])
    assert code == 0
    table_part, scan_part = out.split(str(demo.scan_path))
    assert "no card outline found; read the whole image as one card" in table_part and "no card outline" not in scan_part
    code, out, _ = run_cli(recognize_main, [str(photo), str(demo.scan_path), "--db", str(demo.db), "--json"])
    assert [json.loads(line)["cards"][0]["outline"] for line in out.splitlines()] == ["whole_image", "frame"]


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (20, 300)])
def test_tiny_photo_is_a_clear_per_file_error(demo, tmp_path, size):
    "A 1×1 photo: one line naming the file and its size, the other photos still read (never a traceback)."
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", size, (200, 30, 30)).save(tiny)
    code, out, err = run_cli(recognize_main, [str(tiny), str(demo.scan_path), "--db", str(demo.db), "--json"])
    assert code == 0 and len(out.splitlines()) == 1
    assert f"skipped {tiny}: it is {size[0]}×{size[1]} px, smaller than the 32 px minimum for a card image" in err, err
    assert "Traceback" not in err
    assert run_cli(recognize_main, [str(tiny), "--db", str(demo.db)])[0] == 1
    for image in (Image.new("RGB", size), np.zeros((size[1], size[0], 3), np.uint8)):
        with pytest.raises(PokecardError, match=f"{size[0]}×{size[1]} px, smaller than the 32 px minimum"): demo.recognizer.recognize(image)


def nchw_float_model(path):
    "What a plain torch export of an embedder looks like: float32 NCHW in."
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1)]
    graph = helper.make_graph(nodes, "nchw", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]); model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kind", ["png", "text", "nchw", "missing"])
def test_bad_model_is_one_line_naming_the_file_and_the_interface(demo, tmp_path, kind):
    "OnnxEmbedder and a DB carrying a bad model: one PokecardError line with the file and the interface (old code: ONNX Runtime's text only)."
    from pokecard.export import EMBEDDER_INTERFACE
    path = tmp_path / "model.onnx"
    if kind == "png": demo.scans[demo.ids[0]].save(path, format="PNG")
    elif kind == "text": path.write_text("this is not a model\n")
    elif kind == "nchw": nchw_float_model(path)
    with pytest.raises(PokecardError) as error: OnnxEmbedder(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and EMBEDDER_INTERFACE in message, message
    if kind == "nchw": assert "takes float32 (batch, 3, 224, 224) 'input'" in message
    if kind in ("png", "text"): assert "is not an ONNX model" in message
    if kind == "missing": assert "not found" in message
    if kind == "missing": return
    vectors = np.random.default_rng(0).standard_normal((len(demo.scans), 192)).astype(np.float32)
    db = make_db(tmp_path / "db", path, demo.scans, embeddings=vectors)
    with pytest.raises(PokecardError) as error: Recognizer(db)
    assert "\n" not in str(error.value) and EMBEDDER_INTERFACE in str(error.value) and "model.onnx" in str(error.value)


def test_hints_name_cli_flags(demo):
    "A CLI user is told about --verify off and --verify-margin, not verification='off' (old code: the Python arguments only)."
    import logging
    records = []
    handler = logging.Handler(); handler.emit = records.append
    logger = logging.getLogger("pokecard.pi"); logger.addHandler(handler)
    try: Recognizer(demo.db)
    finally: logger.removeHandler(handler)
    warning = next(r.getMessage() for r in records if "keypoints" in r.getMessage())
    assert "--verify off" in warning and "verification=" not in warning
    code, _, err = run_cli(recognize_main, [str(demo.scan_path), "--db", str(demo.db), "--verify-margin", "-1"])
    assert code == 2 and "--verify-margin must be a similarity margin >= 0" in err
    with pytest.raises(PokecardError, match="--verify-margin"): Recognizer(demo.verified_db, verify_margin=-1)
