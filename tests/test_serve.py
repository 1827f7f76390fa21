"`pokecard serve`: POST /api/recognize answers exactly what `pokecard recognize --json` prints, bad uploads are 400/413 not 500, a correction teaches the DB and the reloaded recogniser reads the same photo as the corrected card, the collection endpoints, concurrent requests, the live view from a video, and the CLI's checks."
import contextlib, io, json, os, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from starlette.testclient import TestClient
from pokecard.cli import main
from pokecard.forge import forge_catalog, render_card
from pokecard.index import build_reference_db
from pokecard.photos import PhotoParams, simulate_scene
from pokecard.pi import recognize_main
from pokecard.testing import thumbnail_model
from pokecard.refdb import ReferenceDB
from pokecard.serve import create_app, search_cards
from pokecard.video import VideoParams, simulate_video_frames, write_video


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    cards = forge_catalog(6, 2, seed=21)
    scans = {c.card_id: render_card(c) for c in cards}
    (root/"scans").mkdir()
    for card_id, scan in scans.items(): scan.save(root/"scans"/f"{card_id}.png")
    metadata = {c.card_id: {"name": c.name, "set_id": c.set_id, "number": str(c.number)} for c in cards}
    db, _ = build_reference_db({c: [root/"scans"/f"{c}.png"] for c in scans}, metadata, thumbnail_model(root/"thumb.onnx"), root/"db", "onnx-fp32", keypoints=True)
    ids = list(scans)
    photo, _ = simulate_scene([scans[ids[0]], scans[ids[3]]], 5, PhotoParams.preset("easy"), size=(800, 600))
    photo.convert("RGB").save(root/"desk.jpg", quality=92)
    return dict(root=root, db=db, ids=ids, scans=scans, metadata=metadata, photo=root/"desk.jpg")


@pytest.fixture
def client(kit, tmp_path):
    import shutil
    db = tmp_path/"db"; shutil.copytree(kit["db"], db)
    app = create_app(db, tmp_path/"collection.sqlite", images=kit["root"]/"scans", max_upload_bytes=2_000_000)
    with TestClient(app) as test_client:
        test_client.app_state = app.state
        yield test_client


def upload(client, path, name=None, url="/api/recognize"):
    return client.post(url, files={"image": (name or Path(path).name, Path(path).read_bytes(), "image/jpeg")})


def without_timing(record):
    return {**record, "timing_ms": sorted(record["timing_ms"])}


def test_recognize_answers_exactly_what_the_cli_prints(kit, client, monkeypatch, capsys):
    monkeypatch.chdir(kit["root"])
    assert recognize_main(["desk.jpg", "--db", str(kit["db"]), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip())
    answered = upload(client, kit["photo"]).json()
    assert list(answered) == list(printed) and answered["image"] == "desk.jpg"
    assert without_timing(answered) == without_timing(printed)
    assert len(answered["cards"]) == 2


@pytest.mark.parametrize("case", ["corrupt", "empty", "text", "no_field", "not_multipart", "too_big", "tiny"])
def test_bad_uploads_are_400_or_413_with_a_clear_message(client, case):
    if case == "corrupt": response = client.post("/api/recognize", files={"image": ("cut.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 100, "image/jpeg")})
    elif case == "empty": response = client.post("/api/recognize", files={"image": ("e.jpg", b"", "image/jpeg")})
    elif case == "text": response = client.post("/api/recognize", files={"image": ("notes.txt", b"hello " * 100, "text/plain")})
    elif case == "no_field": response = client.post("/api/recognize", files={"photo": ("a.jpg", b"x", "image/jpeg")})
    elif case == "not_multipart": response = client.post("/api/recognize", content=b"raw bytes", headers={"content-type": "application/octet-stream"})
    elif case == "too_big": response = client.post("/api/recognize", files={"image": ("big.jpg", b"\0" * 2_100_000, "image/jpeg")})
    else:
        buffer = io.BytesIO(); Image.new("RGB", (20, 20)).save(buffer, "PNG")
        response = client.post("/api/recognize", files={"image": ("tiny.png", buffer.getvalue(), "image/png")})
    assert response.status_code == (413 if case == "too_big" else 400), response.text
    message = response.json()["error"]
    assert {"corrupt": "cut.jpg cannot be read", "empty": "empty", "text": "notes.txt cannot be read", "no_field": "field `image`",
            "not_multipart": "field `image`", "too_big": "limit", "tiny": "smaller than"}[case] in message, message


@pytest.fixture
def unverified_client(kit, tmp_path):
    "A server whose recogniser does no geometric verification: it would (rightly) overrule a made-up correction by the reference scan's keypoints."
    import shutil
    db = tmp_path/"db"; shutil.copytree(kit["db"], db)
    app = create_app(db, tmp_path/"collection.sqlite", verification="off")
    with TestClient(app) as test_client:
        test_client.app_state = app.state
        yield test_client


def test_a_correction_teaches_the_db_and_the_same_photo_is_read_as_that_card(kit, unverified_client):
    client = unverified_client
    scanned = upload(client, kit["photo"], url="/api/scan").json()
    assert len(scanned["scans"]) == 2
    first = scanned["scans"][0]
    read_as = first["top"][0]["card_id"]
    right = next(c for c in kit["ids"] if c != read_as)  # say the photo shows another card: the server must learn it
    rows_before = ReferenceDB.open(client.app_state.slot.db_dir).rows
    answer = client.post("/api/correct", json={"scan_id": first["scan_id"], "card_id": right})
    assert answer.status_code == 200, answer.text
    assert answer.json()["db_rows"] == rows_before + 1 and answer.json()["scan"]["status"] == "corrected"
    assert client.app_state.slot.generation == 1
    again = upload(client, kit["photo"]).json()
    nearest = min(again["cards"], key=lambda c: np.abs(np.mean(c["corners"], 0) - np.mean(first["corners"], 0)).max())
    assert nearest["top"][0]["card_id"] == right and nearest["top"][0]["similarity"] > 0.98, (nearest, first)
    assert first["scan_id"] not in [s["id"] for s in client.get("/api/review").json()]
    for bad, status, text in [({"scan_id": first["scan_id"], "card_id": "../../x"}, 400, "card id"), ({"scan_id": 999, "card_id": right}, 404, "no scan 999"),
                              ({"scan_id": "one", "card_id": right}, 400, "whole number"), ({"scan_id": first["scan_id"], "card_id": "zz-1"}, 400, "not in the reference DB"),
                              ({"card_id": right}, 400, "scan_id")]:
        response = client.post("/api/correct", json=bad)
        assert response.status_code == status and text in response.json()["error"], (bad, response.text)
    assert client.post("/api/correct", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400


def test_collection_endpoints(kit, client):
    scanned = upload(client, kit["photo"], url="/api/scan").json()["scans"][0]
    card_id = scanned["top"][0]["card_id"]
    added = client.post("/api/collection", json={"scan_id": scanned["scan_id"], "card_id": card_id, "finish": "reverse holo", "condition": "lightly_played", "quantity": 3})
    assert added.status_code == 200, added.text
    assert added.json()["finish"] == "reverse_holo" and added.json()["name"] == kit["metadata"][card_id]["name"]
    assert client.app_state.collection.thumbnail(added.json()["id"])[:2] == b"\xff\xd8"  # the crop thumbnail is stored
    csv_text = client.get("/api/collection.csv").text.splitlines()
    assert csv_text[0].startswith("card_id,") and csv_text[1].startswith(f"{card_id},")
    assert client.get("/api/collection.json").json()[0]["quantity"] == 3
    for bad, text in [({"card_id": card_id, "finish": "gold"}, "finish"), ({"card_id": card_id, "quantity": -1}, "quantity"), ({"finish": "holo"}, "card_id")]:
        response = client.post("/api/collection", json=bad)
        assert response.status_code == 400 and text in response.json()["error"], response.text
    hits = client.get("/api/search", params={"q": kit["metadata"][card_id]["name"].lower()}).json()
    assert card_id in [h["card_id"] for h in hits]
    assert client.get(f"/api/cards/{card_id}/image").headers["content-type"] == "image/png"
    assert client.get("/api/cards/..%2F..%2Fetc/image").status_code in (400, 404)
    assert client.get("/api/cards/no-such-1/image").status_code == 404
    page = client.get("/").text
    assert 'accept="image/*" capture' in page and "/api/correct" in page


def test_concurrent_requests_keep_every_addition(kit, client):
    card_id = kit["ids"][1]
    def add(_): return client.post("/api/collection", json={"card_id": card_id, "condition": "mint"}).status_code
    def scan(_): return upload(client, kit["photo"], url="/api/scan").status_code
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(add, range(24))) + list(pool.map(scan, range(4)))
    assert codes == [200] * 28
    assert client.get("/api/collection.json").json()[0]["quantity"] == 24
    assert len(client.get("/api/review", params={"limit": 100}).json()) <= 8


def test_live_view_from_a_video(kit, tmp_path):
    frames, _ = simulate_video_frames({kit["ids"][2]: kit["scans"][kit["ids"][2]]}, seed=2, params=VideoParams(size=(480, 360), fps=20, hold_s=1.0, move_s=0.2, gap_s=0.1))
    video = write_video(frames, tmp_path/"live.mp4", 20)
    app = create_app(kit["db"], tmp_path/"live.sqlite", video=video, verification="off")
    with TestClient(app) as client:
        deadline = time.time() + 30
        while client.get("/api/live.json").json()["frames"] < 12 and time.time() < deadline: time.sleep(0.1)
        assert client.get("/api/live.json").json()["frames"] >= 12
        assert client.get("/api/live.jpg").headers["content-type"] == "image/jpeg"
        assert client.post("/api/live/scan").status_code == 200
        assert "livebox" in client.get("/").text
    assert not app.state.live.thread.is_alive()  # stopped with the app


def test_cli_checks_its_arguments(kit, tmp_path, capsys):
    assert main(["serve", "--db", str(kit["db"]), "--video", str(tmp_path/"none.mp4")]) == 2
    assert "no video file" in capsys.readouterr().err
    assert main(["serve", "--db", str(tmp_path)]) == 2
    assert "not a pokecard reference DB" in capsys.readouterr().err
    with pytest.raises(SystemExit): main(["serve", "--db", str(kit["db"]), "--camera", "0", "--video", "x.mp4"])
