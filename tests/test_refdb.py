"Bad-input matrix, crash safety and concurrency of the reference DB (pokecard.refdb)."
import json, os, shutil, subprocess, sys, textwrap
from pathlib import Path
import numpy as np, pytest
import pokecard.refdb as refdb
from pokecard.core import PokecardError, file_sha256
from pokecard.refdb import ReferenceDB, build_db, add_cards, remove_cards, write_extra, set_thresholds, benchmark_search

DIM = 16
MODEL = dict(file="student_int8.onnx", sha256="ab"*32, kind="onnx-int8")
PREP = {"fn": "pokecard.images.to_model_input", "size": 224, "resample": "bilinear"}

def vectors(n, seed=0, dim=DIM): return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
def ids(n, prefix="c"): return [f"{prefix}{i}" for i in range(n)]

def make_db(path, n=8, **kwargs):
    return build_db(path, vectors(n), ids(n), {c: {"name": c.upper()} for c in ids(n)}, model_info=MODEL, preprocessing=PREP, **kwargs)

def snapshot(db_dir): return {p.name: file_sha256(p) for p in Path(db_dir).iterdir()}

@pytest.fixture
def db_dir(tmp_path): return make_db(tmp_path/"db")

# ---------- build: bad inputs ----------
BAD_BUILDS = {
    "empty": dict(embeddings=np.zeros((0, DIM)), card_ids=[]),
    "3d": dict(embeddings=np.ones((2, 2, 2)), card_ids=["a", "b"]),
    "zero_dim": dict(embeddings=np.ones((2, 0)), card_ids=["a", "b"]),
    "nan": dict(embeddings=np.array([[1.0, np.nan]]), card_ids=["a"]),
    "inf": dict(embeddings=np.array([[1.0, np.inf]]), card_ids=["a"]),
    "zero_row": dict(embeddings=np.array([[1.0, 0], [0, 0]]), card_ids=["a", "b"]),
    "strings": dict(embeddings=[["x", "y"]], card_ids=["a"]),
    "ragged": dict(embeddings=[[1.0, 2.0], [1.0]], card_ids=["a", "b"]),
    "too_few_ids": dict(embeddings=np.ones((2, 2)), card_ids=["a"]),
    "ids_as_string": dict(embeddings=np.ones((2, 2)), card_ids="ab"),
    "bad_id_slash": dict(embeddings=np.ones((1, 2)), card_ids=["a/b"]),
    "bad_id_dotdot": dict(embeddings=np.ones((1, 2)), card_ids=["a..b"]),
    "bad_id_empty": dict(embeddings=np.ones((1, 2)), card_ids=[""]),
    "bad_id_type": dict(embeddings=np.ones((1, 2)), card_ids=[3]),
    "dtype": dict(dtype="f32"),
    "mode": dict(mode="mean"),
    "model_missing_sha": dict(model_info=dict(file="m.onnx", kind="onnx-int8")),
    "model_kind": dict(model_info=dict(MODEL, kind="tflite")),
    "model_sha_short": dict(model_info=dict(MODEL, sha256="abc")),
    "model_not_dict": dict(model_info="m.onnx"),
    "preprocessing": dict(preprocessing="bilinear"),
    "metadata_list": dict(metadata=[1, 2]),
    "metadata_value": dict(metadata={"c0": "name"}),
    "metadata_not_json": dict(metadata={"c0": {"x": object()}}),
    "connectivity": dict(connectivity=1),
    "expansion_search": dict(expansion_search=2.5),
}

@pytest.mark.parametrize("case", BAD_BUILDS)
def test_build_rejects_bad_input_and_keeps_old_db(db_dir, case):
    before = snapshot(db_dir)
    args = dict(embeddings=vectors(3), card_ids=ids(3), metadata=None, model_info=MODEL, preprocessing=PREP) | BAD_BUILDS[case]
    with pytest.raises(PokecardError):
        build_db(db_dir, args.pop("embeddings"), args.pop("card_ids"), args.pop("metadata"), **args)
    assert snapshot(db_dir) == before
    assert not list(db_dir.parent.glob(".db.staging-*"))

def test_build_replaces_and_prototypes(tmp_path):
    db_dir = make_db(tmp_path/"db", n=8)
    build_db(db_dir, vectors(6), ["a", "a", "b", "b", "c", "c"], model_info=MODEL, preprocessing=PREP)
    db = ReferenceDB.open(db_dir)
    assert (len(db), db.rows, db.card_ids) == (3, 3, ["a", "b", "c"])
    mean = vectors(6)[:2] / np.linalg.norm(vectors(6)[:2], axis=1, keepdims=True)
    mean = mean.sum(0) / np.linalg.norm(mean.sum(0))
    np.testing.assert_allclose(db.embeddings[0].astype(np.float32), mean, atol=2e-3)
    assert not list(tmp_path.glob(".db.*")) or [p.name for p in tmp_path.glob(".db.*")] == [".db.lock"]

def test_metadata_kept_only_for_indexed_cards(tmp_path):
    db = ReferenceDB.open(build_db(tmp_path/"db", vectors(2), ["a", "b"], {"a": {"name": "A"}, "zzz": {"name": "Z"}},
                                   model_info=MODEL, preprocessing=PREP))
    assert db.metadata == {"a": {"name": "A"}}
    assert db.card_info("b") == {"card_id": "b", **dict.fromkeys(refdb.CARD_FIELDS)}

# ---------- open: damaged DBs ----------
def edit_manifest(db_dir, change):
    manifest = json.loads((db_dir/"manifest.json").read_text())
    change(manifest)
    (db_dir/"manifest.json").write_text(json.dumps(manifest))

def flip(path, offset=-50):
    data = bytearray(path.read_bytes()); data[offset] ^= 0xFF; path.write_bytes(bytes(data))

DAMAGES = {
    "no_manifest": (lambda d: (d/"manifest.json").unlink(), "manifest"),
    "manifest_garbage": (lambda d: (d/"manifest.json").write_bytes(b"\xff\x00{"), "unreadable"),
    "manifest_truncated": (lambda d: (d/"manifest.json").write_text((d/"manifest.json").read_text()[:40]), "truncated"),
    "manifest_list": (lambda d: (d/"manifest.json").write_text("[]"), "not a pokecard reference DB"),
    "manifest_other_format": (lambda d: edit_manifest(d, lambda m: m.update(format="other")), "not a pokecard reference DB"),
    "manifest_newer": (lambda d: edit_manifest(d, lambda m: m.update(format_version=99)), "upgrade pokecard"),
    "manifest_no_files": (lambda d: edit_manifest(d, lambda m: m.pop("files")), "lacks 'files'"),
    "manifest_core_unlisted": (lambda d: edit_manifest(d, lambda m: m["files"].pop("index.json")), "no checksum"),
    "manifest_traversal": (lambda d: edit_manifest(d, lambda m: m["files"].update({"../x": {"sha256": "0", "bytes": 1}})), "invalid file name"),
    "missing_usearch": (lambda d: (d/"cards.usearch").unlink(), "missing"),
    "missing_embeddings": (lambda d: (d/"embeddings.npy").unlink(), "missing"),
    "flip_usearch": (lambda d: flip(d/"cards.usearch"), "cards.usearch fails its sha256"),
    "flip_embeddings": (lambda d: flip(d/"embeddings.npy"), "embeddings.npy fails its sha256"),
    "flip_index_json": (lambda d: flip(d/"index.json", 5), "index.json fails its sha256"),
    "flip_metadata": (lambda d: flip(d/"metadata.json", 5), "metadata.json fails its sha256"),
    "truncate_usearch": (lambda d: (d/"cards.usearch").write_bytes((d/"cards.usearch").read_bytes()[:100]), "truncated"),
    "truncate_index_json": (lambda d: (d/"index.json").write_bytes((d/"index.json").read_bytes()[:10]), "truncated"),
    "empty_embeddings": (lambda d: (d/"embeddings.npy").write_bytes(b""), "truncated"),
}

@pytest.mark.parametrize("case", DAMAGES)
def test_open_reports_damage(db_dir, case):
    damage, message = DAMAGES[case]
    damage(db_dir)
    with pytest.raises(PokecardError, match=message): ReferenceDB.open(db_dir)

@pytest.mark.parametrize("case", ["truncate_usearch", "truncate_index_json", "empty_embeddings"])
def test_fast_verify_catches_size_changes(db_dir, case):
    DAMAGES[case][0](db_dir)
    with pytest.raises(PokecardError, match="truncated"): ReferenceDB.open(db_dir, checksums="fast")

UNVERIFIED = {  # checksums="none": the loaders still fail cleanly, never crash
    "index_json_truncated": (lambda d: (d/"index.json").write_text('["c0", "c1'), "truncated or corrupted"),
    "index_json_short": (lambda d: (d/"index.json").write_text('["c0"]'), "must list 8 card ids"),
    "index_json_dict": (lambda d: (d/"index.json").write_text('{"a": 1}'), "must list"),
    "metadata_list": (lambda d: (d/"metadata.json").write_text("[]"), "JSON object"),
    "usearch_garbage": (lambda d: (d/"cards.usearch").write_bytes(b"garbage"*100), "not a readable usearch index"),
    "usearch_empty": (lambda d: (d/"cards.usearch").write_bytes(b""), "usearch"),
    "embeddings_garbage": (lambda d: (d/"embeddings.npy").write_bytes(b"garbage"*100), "unreadable"),
    "embeddings_shape": (lambda d: np.save(d/"embeddings.npy", np.zeros((3, DIM), np.float16)), "expected float16"),
    "embeddings_dtype": (lambda d: np.save(d/"embeddings.npy", np.zeros((8, DIM), np.float32)), "expected float16"),
    "embeddings_pickle": (lambda d: np.save(d/"embeddings.npy", np.array([{}], dtype=object), allow_pickle=True), "unreadable"),
}

@pytest.mark.parametrize("case", UNVERIFIED)
def test_loaders_fail_cleanly_without_verification(db_dir, case):
    damage, message = UNVERIFIED[case]
    damage(db_dir)
    with pytest.raises(PokecardError, match=message): ReferenceDB.open(db_dir, checksums="none")

def test_usearch_from_another_db_is_caught(tmp_path, db_dir):
    other = make_db(tmp_path/"other", n=5)
    shutil.copy(other/"cards.usearch", db_dir/"cards.usearch")
    with pytest.raises(PokecardError, match=r"\(dim, rows, dtype\)"): ReferenceDB.open(db_dir, checksums="none")
    with pytest.raises(PokecardError, match="fails its sha256|bytes, the manifest says"): ReferenceDB.open(db_dir)

def test_open_missing_and_not_a_dir(tmp_path):
    with pytest.raises(PokecardError, match="pokecard index build"): ReferenceDB.open(tmp_path/"none")
    (tmp_path/"file").write_text("x")
    with pytest.raises(PokecardError, match="no reference DB"): ReferenceDB.open(tmp_path/"file")

def test_open_bad_verify(db_dir):
    with pytest.raises(PokecardError, match="checksums='quick'"): ReferenceDB.open(db_dir, checksums="quick")

def test_expectations(db_dir):
    with pytest.raises(PokecardError, match=r"built with model student_int8.onnx \(sha256 abababababab.*pokecard index build"):
        ReferenceDB.open(db_dir, expect_model_sha256="cd"*32)
    with pytest.raises(PokecardError, match="16-dim embeddings, your model makes 768"): ReferenceDB.open(db_dir, expect_dim=768)
    with pytest.raises(PokecardError, match="preprocessing"): ReferenceDB.open(db_dir, expect_preprocessing=dict(PREP, size=256))
    assert len(ReferenceDB.open(db_dir, expect_model_sha256="ab"*32, expect_dim=DIM, expect_preprocessing=PREP)) == 8

# ---------- search ----------
@pytest.mark.parametrize("query,k,message", [
    (np.ones(DIM+1), 5, "dimension 17, the DB has 16"),
    (np.ones((2, 3, DIM)), 5, "2-D"),
    (np.zeros(DIM), 5, "all zeros"),
    (np.full(DIM, np.nan), 5, "NaN"),
    (np.ones((0, DIM)), 5, "non-empty"),
    (np.ones(DIM), 0, "positive integer"),
    (np.ones(DIM), "3", "positive integer"),
    (np.ones(DIM), 2.0, "positive integer"),
])
def test_search_rejects_bad_queries(db_dir, query, k, message):
    with pytest.raises(PokecardError, match=message): ReferenceDB.open(db_dir).search(query, k=k)

@pytest.mark.parametrize("dtype", ["f16", "i8"])
@pytest.mark.parametrize("view", [True, False])
def test_search_finds_the_reference(tmp_path, dtype, view):
    db = ReferenceDB.open(make_db(tmp_path/"db", n=50, dtype=dtype), view=view)
    queries = vectors(50) + 0.1*np.random.default_rng(9).normal(size=(50, DIM))
    for exact in (False, True):
        hits = db.search(queries, k=3, exact=exact)
        assert [h[0].card_id for h in hits] == ids(50)
        assert all(len(h) == 3 and h[0].similarity >= h[1].similarity >= h[2].similarity for h in hits)
    assert db.manifest["dtype"] == dtype

def test_search_fills_k_distinct_cards_with_many_rows_per_card(tmp_path):
    base = vectors(4)
    rows = np.concatenate([np.repeat(base[:1], 20, 0) + 0.01*vectors(20, 1), base[1:]])
    db = ReferenceDB.open(build_db(tmp_path/"db", rows, ["a"]*20 + ["b", "c", "d"], mode="multi", model_info=MODEL, preprocessing=PREP))
    assert (len(db), db.rows, db.max_rows_per_card) == (4, 23, 20)
    for exact in (False, True):
        hits = db.search(base[0], k=4, exact=exact)[0]
        assert [h.card_id for h in hits][0] == "a" and sorted(h.card_id for h in hits) == ["a", "b", "c", "d"]

def test_card_info_and_contains(db_dir):
    db = ReferenceDB.open(db_dir)
    assert "c1" in db and "zz" not in db
    assert db.card_info("c1")["name"] == "C1"
    with pytest.raises(PokecardError, match="not in the DB"): db.card_info("zz")
    assert "cards=8" in repr(db)

def test_open_db_survives_replacement(tmp_path):
    db_dir = make_db(tmp_path/"db", n=8)
    db = ReferenceDB.open(db_dir, view=True)
    expected = db.search(vectors(8), k=2)
    build_db(db_dir, vectors(5, seed=3), ids(5, "x"), model_info=MODEL, preprocessing=PREP)
    assert db.search(vectors(8), k=2) == expected  # the mapped files of the old DB stay valid
    assert ReferenceDB.open(db_dir).card_ids == ids(5, "x")

# ---------- add / remove ----------
def test_add_checks(db_dir):
    before = snapshot(db_dir)
    with pytest.raises(PokecardError, match="dimension 8, the DB has 16"): add_cards(db_dir, vectors(1, dim=8), ["n"])
    with pytest.raises(PokecardError, match="built with model"): add_cards(db_dir, vectors(1), ["n"], model_sha256="cd"*32)
    with pytest.raises(PokecardError, match="already in"): add_cards(db_dir, vectors(1), ["c3"])
    with pytest.raises(PokecardError, match="on_existing"): add_cards(db_dir, vectors(1), ["n"], on_existing="skip")
    with pytest.raises(PokecardError, match="mode"): add_cards(db_dir, vectors(1), ["n"], mode="avg")
    with pytest.raises(PokecardError, match="card id"): add_cards(db_dir, vectors(1), ["../n"])
    assert snapshot(db_dir) == before
    with pytest.raises(PokecardError, match="no reference DB"): add_cards(db_dir.parent/"missing", vectors(1), ["n"])

def test_add_modes(db_dir):
    new = vectors(4, seed=5)
    add_cards(db_dir, new, ["n1", "n1", "n2", "n2"], {"n1": {"name": "N1"}}, model_sha256="ab"*32)
    db = ReferenceDB.open(db_dir)
    assert (len(db), db.rows) == (10, 10)
    add_cards(db_dir, new[:2], ["n1", "n1"], {"n1": {"rarity": "Rare"}}, mode="multi", on_existing="append")
    db = ReferenceDB.open(db_dir)
    assert (len(db), db.rows, db.card_info("n1")["name"], db.card_info("n1")["rarity"]) == (10, 12, "N1", "Rare")
    add_cards(db_dir, new[2:3], ["n1"], on_existing="replace")
    db = ReferenceDB.open(db_dir)
    assert (len(db), db.rows, db.row_card_ids.count("n1")) == (10, 10, 1)
    assert db.search(new[2], k=1, exact=True)[0][0].card_id in ("n1", "n2")
    assert db.manifest["created"] <= db.manifest["updated"]

def test_add_matches_full_rebuild(tmp_path):
    add_db = make_db(tmp_path/"a", n=8)
    add_cards(add_db, vectors(4, seed=7), ids(4, "n"))
    full_db = build_db(tmp_path/"b", np.concatenate([vectors(8), vectors(4, seed=7)]), ids(8) + ids(4, "n"), model_info=MODEL, preprocessing=PREP)
    a, b = ReferenceDB.open(add_db), ReferenceDB.open(full_db)
    np.testing.assert_array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))
    assert a.row_card_ids == b.row_card_ids
    queries = vectors(12, seed=11)
    assert a.search(queries, k=4, exact=True) == b.search(queries, k=4, exact=True)

def test_remove(db_dir):
    with pytest.raises(PokecardError, match="not in"): remove_cards(db_dir, ["c1", "nope"])
    with pytest.raises(PokecardError, match="list of card ids"): remove_cards(db_dir, "c1")
    with pytest.raises(PokecardError, match="empty"): remove_cards(db_dir, ids(8))
    remove_cards(db_dir, ["c1", "nope"], missing_ok=True)
    db = ReferenceDB.open(db_dir)
    assert (len(db), "c1" in db, "c1" in db.metadata) == (7, False, False)
    assert db.search(vectors(8)[2], k=1, exact=True)[0][0].card_id == "c2"
    assert db.index.size == 7

def test_update_refuses_a_corrupted_db(db_dir):
    flip(db_dir/"embeddings.npy")
    with pytest.raises(PokecardError, match="sha256"): add_cards(db_dir, vectors(1), ["n"])
    with pytest.raises(PokecardError, match="sha256"): remove_cards(db_dir, ["c1"])

# ---------- extras and thresholds ----------
@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "manifest.json", "index.json", "cards.usearch", "", "x"*200, 3])
def test_write_extra_bad_names(db_dir, name):
    with pytest.raises(PokecardError, match="plain file name"): write_extra(db_dir, name, b"x")

def test_extras(db_dir):
    with pytest.raises(PokecardError, match="must be bytes"): write_extra(db_dir, "k.npz", "text")
    write_extra(db_dir, "k.npz", b"one", {"kind": "orb"})
    write_extra(db_dir, "k.npz", b"two", {"kind": "orb", "v": 2})
    write_extra(db_dir, "other.bin", b"three")
    db = ReferenceDB.open(db_dir)
    assert (db.read_extra("k.npz"), db.read_extra("other.bin")) == (b"two", b"three")
    assert db.manifest["extras"] == {"k.npz": {"kind": "orb", "v": 2}, "other.bin": {}}
    with pytest.raises(PokecardError, match="no extra file"): db.read_extra("nope")
    remove_cards(db_dir, ["c0"])
    assert ReferenceDB.open(db_dir).read_extra("k.npz") == b"two"
    flip(db_dir/"k.npz", 0)
    with pytest.raises(PokecardError, match="k.npz fails its sha256"): ReferenceDB.open(db_dir)

def test_thresholds(db_dir):
    with pytest.raises(PokecardError, match="thresholds must be a dict"): set_thresholds(db_dir, [0.8])
    with pytest.raises(PokecardError, match="no reference DB"): set_thresholds(db_dir.parent/"none", {"match": 0.8})
    set_thresholds(db_dir, {"match": 0.8, "uncertain": 0.6})
    assert ReferenceDB.open(db_dir).thresholds == {"match": 0.8, "uncertain": 0.6}
    add_cards(db_dir, vectors(1, seed=4), ["n"])
    assert ReferenceDB.open(db_dir).thresholds["match"] == 0.8

# ---------- crashes and concurrency ----------
def run_python(code, *args):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True, text=True, timeout=120)

def test_killed_writer_leaves_old_db(db_dir):
    before = snapshot(db_dir)
    result = run_python("""
        import os, signal, sys, numpy as np
        import pokecard.refdb as refdb
        def dying_save(index, path):
            open(path, "wb").write(b"half an index")
            os.kill(os.getpid(), signal.SIGKILL)
        refdb._save_index = dying_save
        refdb.add_cards(sys.argv[1], np.ones((1, 16)), ["new"])
    """, db_dir)
    assert result.returncode == -9, result.stderr
    assert snapshot(db_dir) == before
    assert list(db_dir.parent.glob(".db.staging-*"))  # the killed writer's leftovers ...
    assert len(ReferenceDB.open(db_dir)) == 8
    add_cards(db_dir, vectors(1, seed=2), ["new"])
    assert not list(db_dir.parent.glob(".db.staging-*"))  # ... are cleaned by the next writer
    assert len(ReferenceDB.open(db_dir)) == 9

def test_fallback_swap_and_recovery(tmp_path, monkeypatch):
    monkeypatch.setattr(refdb, "_exchange_dirs", lambda a, b: False)
    db_dir = make_db(tmp_path/"db", n=8)
    make_db(db_dir, n=6)  # replace through the two-rename path
    assert len(ReferenceDB.open(db_dir)) == 6 and not (tmp_path/".db.previous").exists()
    os.rename(db_dir, tmp_path/".db.previous")  # a crash between the two renames
    assert len(ReferenceDB.open(db_dir)) == 6   # the reader puts the previous DB back
    shutil.copytree(db_dir, tmp_path/".db.previous")  # a crash after the swap, before the cleanup
    add_cards(db_dir, vectors(1, seed=3), ["n"])
    assert not (tmp_path/".db.previous").exists() and len(ReferenceDB.open(db_dir)) == 7

def test_concurrent_writers_do_not_lose_updates(db_dir):
    code = """
        import sys, numpy as np
        from pokecard.refdb import add_cards
        for i in range(3): add_cards(sys.argv[1], np.random.default_rng(int(sys.argv[2])*10+i).normal(size=(1, 16)), [f"w{sys.argv[2]}-{i}"])
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(db_dir), str(w)], stderr=subprocess.PIPE) for w in (1, 2)]
    for p in procs: assert p.wait(timeout=120) == 0, p.stderr.read()
    db = ReferenceDB.open(db_dir)
    assert len(db) == 14 and {f"w{w}-{i}" for w in (1, 2) for i in range(3)} <= set(db.card_ids)

def test_no_torch_import():
    result = run_python("import sys, pokecard.refdb; assert 'torch' not in sys.modules, 'torch imported'")
    assert result.returncode == 0, result.stderr

def test_benchmark_small():
    result = benchmark_search(500, dim=32, n_queries=20, n_latency=5, query_noise=0.3, dtype="i8")
    assert result["recall1_hnsw_vs_exact"] >= 0.9 and result["exact_top1_is_source"] >= 0.9
    assert result["search_ms_p50"] > 0 and result["index_bytes"] > 0 and result["dtype"] == "i8"

# ---------- model files carried in the DB ----------
def test_model_files(tmp_path):
    model = tmp_path/"student_int8.onnx"; model.write_bytes(b"model bytes")
    hef = tmp_path/"student.hef"; hef.write_bytes(b"hef bytes")
    info = dict(file=model.name, sha256=file_sha256(model), kind="onnx-int8", hef=dict(file=hef.name, sha256=file_sha256(hef)))
    db_dir = build_db(tmp_path/"db", vectors(4), ids(4), model_info=info, preprocessing=PREP, model_files=[model, hef])
    assert (db_dir/model.name).read_bytes() == b"model bytes"
    add_cards(db_dir, vectors(1, seed=4), ["n"])
    remove_cards(db_dir, ["c0"])
    write_extra(db_dir, "k.bin", b"k")
    db = ReferenceDB.open(db_dir, expect_model_sha256=info["sha256"])
    assert {model.name, hef.name, "k.bin"} <= set(db.manifest["files"]) and (db_dir/hef.name).read_bytes() == b"hef bytes"
    with pytest.raises(PokecardError, match="model file of the DB"): write_extra(db_dir, model.name, b"evil")
    flip(db_dir/model.name, 0)
    with pytest.raises(PokecardError, match="student_int8.onnx fails its sha256"): ReferenceDB.open(db_dir)

@pytest.mark.parametrize("case", ["missing", "wrong_sha", "wrong_hef_sha", "core_name", "duplicate"])
def test_model_files_bad(tmp_path, case):
    model = tmp_path/"m.onnx"; model.write_bytes(b"model")
    other = tmp_path/"x"; other.mkdir(); (other/"m.onnx").write_bytes(b"model")
    hef = tmp_path/"m.hef"; hef.write_bytes(b"hef")
    info = dict(file="m.onnx", sha256=file_sha256(model), kind="onnx-int8", hef=dict(file="m.hef", sha256=file_sha256(hef)))
    files = [model]
    if case == "missing": files = [tmp_path/"nope.onnx"]
    if case == "wrong_sha": info["sha256"] = "cd"*32
    if case == "wrong_hef_sha": info["hef"]["sha256"] = "cd"*32; files = [model, hef]
    if case == "core_name": (tmp_path/"index.json").write_text("[]"); files = [tmp_path/"index.json"]
    if case == "duplicate": files = [model, other/"m.onnx"]
    with pytest.raises(PokecardError, match="does not exist|has sha256|plain name|repeat"):
        build_db(tmp_path/"db", vectors(2), ids(2), model_info=info, preprocessing=PREP, model_files=files)
    assert not (tmp_path/"db").exists()

def test_builds_are_reproducible_and_complete(tmp_path):
    refs = refdb.synthetic_references(3000, dim=64, seed=4)
    a = build_db(tmp_path/"a", refs, ids(3000), model_info=MODEL, preprocessing=PREP)
    b = build_db(tmp_path/"b", refs, ids(3000), model_info=MODEL, preprocessing=PREP)
    assert file_sha256(a/"cards.usearch") == file_sha256(b/"cards.usearch")
    db = ReferenceDB.open(a)
    assert [h[0].row for h in db.search(refs, k=1)] == list(range(3000))  # every row reachable through the graph

def test_expansion_search_override(db_dir):
    assert ReferenceDB.open(db_dir).index.expansion_search == refdb.HNSW_DEFAULTS["expansion_search"]
    assert ReferenceDB.open(db_dir, expansion_search=40).index.expansion_search == 40
    with pytest.raises(PokecardError, match="expansion_search"): ReferenceDB.open(db_dir, expansion_search=0)
