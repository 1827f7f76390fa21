"pokecard.catalog: the real-data catalog, the class-folder layout, catalog I/O and the downloader against a local HTTP server."
import io, json, os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

import pokecard.catalog as catalog_module
from pokecard.catalog import (CATALOG_COLUMNS, catalog_from_class_folders, catalog_from_folder, download_images, download_main,
                              load_catalog, load_metadata, load_sets, reprint_groups, reprint_mask, save_catalog)
from pokecard.core import PokecardError

DATA_ROOT = Path(os.environ.get("POKECARD_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))


def image_bytes(fmt="PNG", size=(80, 112), seed=0):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def card(card_id, name, number, large=None, **extra):
    record = dict(id=card_id, name=name, number=number, supertype="Pokémon", subtypes=["Basic"], types=["Water"],
                  rarity="Common", artist="Someone")
    if large is not None: record["images"] = dict(small=large, large=large)
    return {**record, **extra}


# --- the real data ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_catalog():
    if not (DATA_ROOT / "cards").is_dir() or not (DATA_ROOT / "metadata" / "cards" / "en").is_dir():
        pytest.skip(f"real data not found at {DATA_ROOT} (set POKECARD_DATA_ROOT)")
    return catalog_from_folder(DATA_ROOT / "cards", DATA_ROOT / "metadata")


def test_real_catalog_counts_and_names(real_catalog):
    assert len(real_catalog) == 128 and list(real_catalog.columns) == CATALOG_COLUMNS
    by_id = real_catalog.set_index("card_id")
    assert by_id.loc["xy12-20", "name"] == "Magmar"
    assert by_id.loc["xy12-20", "set_name"] == "Evolutions" and by_id.loc["xy12-20", "release_date"] == "2016-11-02"
    assert by_id.loc["swshp-SWSH231", "set_id"] == "swshp" and by_id.loc["swshp-SWSH231", "number"] == "SWSH231"
    assert by_id.loc["xy12-20", "image_url"].startswith("https://")
    assert (real_catalog.set_id == "xy12").sum() == 113
    with_metadata = real_catalog[real_catalog.has_metadata]
    assert len(with_metadata) >= 127 and (with_metadata.set_name != "").all() and (with_metadata.name != "").all()
    assert all(Path(p).is_file() for paths in real_catalog.image_paths for p in paths)


def test_real_bulbasaur_reprint_group(real_catalog):
    bulbasaurs = real_catalog[real_catalog.image_paths.map(lambda paths: Path(paths[0]).parent.name == "bulbasaur")]
    assert len(bulbasaurs) == 15
    named = bulbasaurs[bulbasaurs.has_metadata]
    assert set(named.name) == {"Bulbasaur"}
    # sv7-143 (Stellar Crown, 2024) is newer than the metadata copy: no name, so not in the group until the metadata has it.
    assert set(bulbasaurs.card_id[~bulbasaurs.has_metadata]) <= {"sv7-143"}
    assert set(reprint_groups(real_catalog)["Bulbasaur"]) == set(named.card_id)
    assert reprint_mask(real_catalog)[bulbasaurs.index[bulbasaurs.has_metadata]].all()


def test_real_catalog_reads_only_needed_sets(monkeypatch):
    if not (DATA_ROOT / "metadata" / "cards" / "en").is_dir(): pytest.skip(f"real data not found at {DATA_ROOT}")
    read = []
    original = catalog_module._read_json
    monkeypatch.setattr(catalog_module, "_read_json", lambda path: read.append(Path(path)) or original(path))
    catalog_from_folder(DATA_ROOT / "cards" / "xy12", DATA_ROOT / "metadata")
    assert sorted(p.name for p in read) == ["en.json", "xy12.json"]


def test_real_metadata_and_round_trip(real_catalog, tmp_path):
    metadata = load_metadata(DATA_ROOT / "metadata")
    assert len(metadata) == 17679 and metadata["xy12-20"]["name"] == "Magmar"
    assert len(load_sets(DATA_ROOT / "metadata")) == 159
    for name in ("c.parquet", "c.csv"):
        assert load_catalog(save_catalog(real_catalog, tmp_path / name)).to_dict("records") == real_catalog.to_dict("records")


# --- fixtures: folder and class-folder layouts ----------------------------------------------------

@pytest.fixture
def metadata_dir(tmp_path):
    folder = tmp_path / "metadata"
    write_json(folder / "cards" / "en" / "aa.json", [card("aa-1", "Squirtle", "1"), card("aa-2", "Psyduck", "2")])
    write_json(folder / "cards" / "en" / "bb.json", [card("bb-7", "Squirtle", "7", rarity="Rare")])
    write_json(folder / "sets" / "en.json", [dict(id="aa", name="Set A", releaseDate="2001/02/03"), dict(id="bb", name="Set B", releaseDate="2002/03/04")])
    return folder


def save_image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes("PNG" if path.suffix == ".png" else "JPEG", size=(20, 28), seed=seed))


def test_catalog_from_folder_with_and_without_metadata(tmp_path, metadata_dir):
    for rel in ["x/aa-1.png", "y/aa-1.jpg", "bb-7.jpg", "zz-3b.png", "bad id.png"]: save_image(tmp_path / "scans" / rel)
    table = catalog_from_folder(tmp_path / "scans", metadata_dir)
    assert list(table.card_id) == ["aa-1", "bb-7", "zz-3b"]
    assert len(table.image_paths[0]) == 2 and all(Path(p).is_absolute() for p in table.image_paths[0])
    assert table.name.tolist() == ["Squirtle", "Squirtle", ""]
    assert table.loc[2, ["set_id", "number", "has_metadata", "source"]].tolist() == ["zz", "3b", False, "folder"]
    assert reprint_groups(table) == {"Squirtle": ["aa-1", "bb-7"]}
    bare = catalog_from_folder(tmp_path / "scans")
    assert (bare.name == "").all() and bare.set_id.tolist() == ["aa", "bb", "zz"] and not bare.has_metadata.any()
    with pytest.raises(PokecardError, match="no card images"): catalog_from_folder(tmp_path / "metadata")
    with pytest.raises(PokecardError, match="does not exist"): catalog_from_folder(tmp_path / "absent")
    with pytest.raises(PokecardError, match="pokemon-tcg-data"): catalog_from_folder(tmp_path / "scans", tmp_path / "scans")


def test_catalog_from_class_folders(tmp_path, metadata_dir):
    train = tmp_path / "train"
    for i, rel in enumerate(["aa-1/0.png", "aa-1/1.png", "aa-1/sub/2.jpg", "aa-1/.hidden.png", "bb-7/front.jpg",
                             "zz-9/a.png", "bad name/0.png", ".cache/0.png"]):
        save_image(train / rel, seed=i)
    (train / "aa-2").mkdir(); (train / "aa-2" / "readme.txt").write_text("no images")
    save_image(train / "loose.png")  # a file beside the class folders is ignored
    table = catalog_from_class_folders(train, metadata_dir)
    assert list(table.card_id) == ["aa-1", "bb-7", "zz-9"]
    assert table.image_paths.map(len).tolist() == [3, 1, 1]
    assert table.name.tolist() == ["Squirtle", "Squirtle", ""] and set(table.source) == {"class_folders"}
    assert table.loc[0, "set_name"] == "Set A" and table.loc[0, "release_date"] == "2001-02-03"
    assert reprint_mask(table).tolist() == [True, True, False]
    assert catalog_from_class_folders(train).name.tolist() == ["", "", ""]
    empty = tmp_path / "empty"; (empty / "bad id").mkdir(parents=True)
    with pytest.raises(PokecardError, match="no class folders"): catalog_from_class_folders(empty)
    with pytest.raises(PokecardError, match="does not exist"): catalog_from_class_folders(tmp_path / "absent")


def test_catalog_io(tmp_path, metadata_dir, monkeypatch):
    save_image(tmp_path / "scans" / "aa-1.png"); save_image(tmp_path / "scans" / "qq-5.png")
    table = catalog_from_folder(tmp_path / "scans", metadata_dir)
    records = table.to_dict("records")
    assert load_catalog(save_catalog(table, tmp_path / "c.parquet")).to_dict("records") == records
    assert load_catalog(save_catalog(table, tmp_path / "c.csv")).to_dict("records") == records
    monkeypatch.setattr(catalog_module, "_has_pyarrow", lambda: False)
    written = save_catalog(table, tmp_path / "d.parquet")
    assert written == tmp_path / "d.csv" and load_catalog(tmp_path / "d.parquet").to_dict("records") == records
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(PokecardError, match="not found"): load_catalog(tmp_path / "none.parquet")
    with pytest.raises(PokecardError, match=".parquet or .csv"): save_catalog(table, tmp_path / "c.json")


# --- the downloader against a local HTTP server --------------------------------------------------

class CardServer:
    "A local image server: path prefix picks the behaviour."
    def __init__(self):
        self.hits, self.lock = {}, threading.Lock()
        self.png, self.jpg, self.webp, self.tiny = image_bytes("PNG"), image_bytes("JPEG", seed=1), image_bytes("WEBP", seed=2), image_bytes("PNG", (8, 8))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args): pass

            def answer(self, status, body=b"", content_type="image/png"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with server.lock:
                    server.hits[self.path] = hits = server.hits.get(self.path, 0) + 1
                kind = self.path.split("/")[1]
                if kind == "png": self.answer(200, server.png)
                elif kind == "jpg": self.answer(200, server.jpg, "image/jpeg")
                elif kind == "webp": self.answer(200, server.webp, "image/webp")
                elif kind == "flaky": self.answer(500, b"oops", "text/plain") if hits == 1 else self.answer(200, server.png)
                elif kind == "html": self.answer(200, b"<html>login</html>", "text/html; charset=utf-8")
                elif kind == "empty": self.answer(200, b"")
                elif kind == "garbage": self.answer(200, b"\x89PNG\r\n\x1a\n" + b"\0" * 500)
                elif kind == "tiny": self.answer(200, server.tiny)
                elif kind == "slow": time.sleep(1.5); self.answer(200, server.png)
                else: self.answer(404, b"not found", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown(); self.httpd.server_close(); self.thread.join(5)


@pytest.fixture
def card_server():
    server = CardServer()
    yield server
    server.stop()
    assert not server.thread.is_alive()


@pytest.fixture
def download_metadata(tmp_path, card_server):
    url = card_server.url
    folder = tmp_path / "metadata"
    write_json(folder / "cards" / "en" / "tst.json", [
        card("tst-1", "One", "1", f"{url}/png/1_hires.png"),
        card("tst-2", "Two", "2", f"{url}/jpg/2_hires.jpg"),
        card("tst-3", "Three", "3", f"{url}/flaky/3.png"),
        card("tst-4", "Four", "4", f"{url}/html/4.png"),
        card("tst-5", "Five", "5", f"{url}/empty/5.png"),
        card("tst-6", "Six", "6", f"{url}/missing/6.png"),
        card("tst-7", "Seven", "7"),
        card("tst-8", "Eight", "8", f"{url}/tiny/8.png"),
        card("tst-9", "Nine", "9", f"{url}/garbage/9.png"),
        card("tst-10", "Ten", "10", f"{url}/webp/10"),
        card("tst-11", "Eleven", "11", f"{url}/slow/11.png"),
        card("tst-../../evil", "Evil", "x", f"{url}/png/evil.png"),
        card("tst-?", "Unown", "?", f"{url}/png/unown.png"),
        card("tst-12", "Twelve", "12", "file:///etc/passwd"),
    ])
    write_json(folder / "cards" / "en" / "ok.json", [card("ok-1", "Good", "1", f"{url}/png/ok1.png")])
    write_json(folder / "sets" / "en.json", [dict(id="tst", name="Test"), dict(id="ok", name="OK")])
    return folder


def plain_session():
    session = requests.Session()
    session.trust_env = False  # never route 127.0.0.1 through a proxy from the environment
    return session


def test_download_images(tmp_path, card_server, download_metadata):
    out = tmp_path / "out"
    started = time.monotonic()
    summary = download_images(download_metadata, "tst", out, retries=2, timeout=0.5, backoff=0.01, workers=3,
                              session=plain_session(), progress=False)
    assert time.monotonic() - started < 30
    assert summary.downloaded == ["tst-1", "tst-2", "tst-3", "tst-10"] and summary.skipped == []
    reasons = dict(summary.failed)
    assert sorted(reasons) == sorted(["tst-4", "tst-5", "tst-6", "tst-7", "tst-8", "tst-9", "tst-11", "tst-12", "tst-../../evil", "tst-?"])
    assert "content-type 'text/html' is not an image" in reasons["tst-4"]
    assert "empty body" in reasons["tst-5"] and "3 tries" in reasons["tst-5"]
    assert "HTTP 404" in reasons["tst-6"]
    assert "images.large" in reasons["tst-7"] and "images.large" in reasons["tst-12"]
    assert "smaller than 64 px" in reasons["tst-8"]
    assert "not a decodable image" in reasons["tst-9"]
    assert "Timeout" in reasons["tst-11"] or "timed out" in reasons["tst-11"]
    assert "invalid card id" in reasons["tst-../../evil"] and "invalid card id" in reasons["tst-?"]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["tst/tst-1.png", "tst/tst-10.webp", "tst/tst-2.jpg", "tst/tst-3.png"]
    assert (out / "tst" / "tst-1.png").read_bytes() == card_server.png
    assert not list(tmp_path.rglob("evil*")) and not (tmp_path / "evil.png").exists()
    hits = card_server.hits
    assert hits["/flaky/3.png"] == 2 and hits["/empty/5.png"] == 3          # retried
    assert hits["/missing/6.png"] == 1 and hits["/html/4.png"] == 1 and hits["/tiny/8.png"] == 1  # not retried
    assert "/png/evil.png" not in hits and "/png/unown.png" not in hits

    # resume: a second run downloads nothing and asks the server only for the failures
    before = dict(hits)
    again = download_images(download_metadata, ["tst"], out, retries=0, timeout=0.5, backoff=0, session=plain_session(), progress=False)
    assert again.downloaded == [] and again.skipped == ["tst-1", "tst-2", "tst-3", "tst-10"]
    assert all(hits[path] == before[path] for path in ("/png/1_hires.png", "/jpg/2_hires.jpg", "/flaky/3.png", "/webp/10"))

    # a leftover temp file is not a complete image: the card is fetched again
    (out / "tst" / "tst-1.png").unlink()
    (out / "tst" / ".tst-1.png.abc.tmp").write_bytes(b"partial")
    third = download_images(download_metadata, "tst", out, retries=0, timeout=0.5, session=plain_session(), progress=False)
    assert third.downloaded == ["tst-1"] and (out / "tst" / "tst-1.png").read_bytes() == card_server.png
    assert "downloaded 1, skipped 3" in str(third)


def test_download_rejects_unknown_sets(tmp_path, download_metadata):
    with pytest.raises(PokecardError, match="'xy99'.*2 sets available"): download_images(download_metadata, "tst,xy99", tmp_path / "o")
    with pytest.raises(PokecardError, match="no set ids"): download_images(download_metadata, " , ", tmp_path / "o")
    with pytest.raises(PokecardError, match="card ids are"): download_images(download_metadata, "../tst", tmp_path / "o")


def test_download_main(tmp_path, card_server, download_metadata, capsys, monkeypatch):
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"): monkeypatch.delenv(key, raising=False)
    out = str(tmp_path / "out")
    assert download_main(["--metadata", str(download_metadata), "--sets", "ok", "--out", out, "--no-progress"]) == 0
    assert "downloaded 1" in capsys.readouterr().out and (tmp_path / "out" / "ok" / "ok-1.png").is_file()
    assert download_main(["--metadata", str(download_metadata), "--sets", "ok", "--out", out, "--no-progress"]) == 0
    assert "skipped 1" in capsys.readouterr().out
    assert download_main(["--metadata", str(tmp_path / "nowhere"), "--sets", "ok", "--out", out]) == 2
    assert "pokemon-tcg-data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info: download_main(["--sets", "ok"])
    assert info.value.code == 2


# --- card fields without pandas (the Pi's index build/add) ------------------------------------------------------------

def test_read_card_metadata_gives_the_catalogs_fields(tmp_path, metadata_dir):
    "The same fields, values and strings as index.card_metadata of the pandas catalog, for just the cards asked for."
    from pokecard.catalog import CARD_METADATA_FIELDS, read_card_metadata
    from pokecard.images import scan_image_folder
    for rel in ["x/aa-1.png", "y/aa-1.jpg", "bb-7.jpg", "zz-3b.png"]: save_image(tmp_path / "scans" / rel)
    found = scan_image_folder(tmp_path / "scans")
    fields = read_card_metadata(metadata_dir, found)
    assert list(fields) == ["aa-1", "bb-7", "zz-3b"]
    assert CARD_METADATA_FIELDS == ("name", "set_id", "set_name", "number", "rarity", "supertype", "image_url")
    assert fields["bb-7"] == dict(name="Squirtle", set_id="bb", set_name="Set B", number="7", rarity="Rare", supertype="Pokémon", image_url="")
    assert fields["zz-3b"] == dict(name="", set_id="zz", set_name="", number="3b", rarity="", supertype="", image_url="")
    table = catalog_from_folder(tmp_path / "scans", metadata_dir)
    expected = {row["card_id"]: {f: row[f] or "" for f in CARD_METADATA_FIELDS} for row in table.to_dict("records")}
    assert fields == expected
    assert read_card_metadata(None, ["aa-1"]) == {"aa-1": dict(name="", set_id="aa", set_name="", number="1", rarity="", supertype="", image_url="")}
    assert read_card_metadata(metadata_dir, []) == {}
    with pytest.raises(PokecardError, match="pokemon-tcg-data"): read_card_metadata(tmp_path / "scans", ["aa-1"])


def test_catalog_imports_and_reads_metadata_without_pandas(tmp_path, metadata_dir):
    "The Pi install has no pandas: `from pokecard.catalog import read_card_metadata` works; the DataFrame builders name the extra to install."
    import subprocess, sys
    for rel in ["aa-1.png", "bb-7.webp"]: save_image(tmp_path / "scans" / rel)
    code = f"""
import sys, json
for name in ("pandas", "pyarrow", "torch", "onnx"): sys.modules[name] = None
from pokecard.catalog import read_card_metadata
from pokecard.images import scan_image_folder
from pokecard.core import PokecardError
found = scan_image_folder({str(tmp_path / 'scans')!r})
print(json.dumps(read_card_metadata({str(metadata_dir)!r}, found)))
import pokecard.catalog as catalog
try: catalog.catalog_from_folder({str(tmp_path / 'scans')!r})
except PokecardError as error: print("refused:", error)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[0])["bb-7"]["name"] == "Squirtle" and list(json.loads(lines[0])) == ["aa-1", "bb-7"]
    assert lines[1].startswith("refused:") and "needs pandas" in lines[1] and "pokecard[train]" in lines[1]
