"Benchmark against the alternatives: the methods on tiny forged cards, the table, bad input, and `pokecard bench` on the ci run."
import json
from pathlib import Path
import cv2, numpy as np, pandas as pd, pytest
from PIL import Image
from pokecard.bench import BENCH_COLUMNS, EmbeddingMethod, ORBMethod, PHashMethod, VerifiedMethod, benchmark_methods, build_methods, choose_queries, markdown_table, plot_bench
from pokecard.decision import open_set_stats
from pokecard.metrics import rank_cards, ranking_metrics
from pokecard.core import PokecardError, project_root
from pokecard.params import load_params
from pokecard.stages import stale_reason
from pokecard.pipeline import load_stages
from pokecard.forge import forge_catalog, render_card
from pokecard.photos import PhotoParams, simulate_crop

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cards():
    forged = forge_catalog(5, 2, seed=3, reprint_fraction=0.5)
    scans = [render_card(card).resize((184, 256), Image.Resampling.LANCZOS) for card in forged]
    return scans, [c.card_id for c in forged], {c.card_id: c.name for c in forged}


def perspective_copy(image, angle=30.0, tilt=0.15):
    array = np.asarray(image); h, w = array.shape[:2]
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    moved = corners + np.float32([[tilt * w, 0], [-tilt * w, tilt * h], [0, 0], [0, 0]])
    moved = cv2.transform(moved[None], cv2.getRotationMatrix2D((w / 2, h / 2), angle, 0.8))[0]
    return cv2.warpPerspective(array, cv2.getPerspectiveTransform(corners, moved), (w, h), borderValue=(70, 60, 50))


def thumbnails():
    embed = lambda images: np.stack([np.asarray(Image.fromarray(i).resize((8, 8), Image.Resampling.BOX), np.float32).ravel() - 128 for i in images])
    return EmbeddingMethod("thumbnails", embed, size=64, model_bytes=123)


def test_phash_finds_exact_copy_first(cards):
    scans, ids, _ = cards
    for hash_size in (8, 16):
        method = PHashMethod(hash_size).fit(scans, ids)
        for scan, card_id in zip(scans, ids):
            assert method.rank(scan, 1) == [card_id]
            assert method.scores(np.asarray(scan))[ids.index(card_id)] == 1.0  # arrays work like PIL images
        assert method.index_bytes == len(ids) * hash_size * hash_size // 8 and method.model_bytes == 0


def test_orb_finds_rotated_perspective_copy(cards):
    scans, ids, _ = cards
    method = ORBMethod(300, height=256).fit(scans, ids)
    for i in (0, 3):
        scores = method.scores(perspective_copy(scans[i]))
        assert method.rank(perspective_copy(scans[i]), 1) == [ids[i]]
        assert scores[i] >= 10 and scores[i] > 2 * np.delete(scores, i).max()
    assert method.index_bytes > 0


def test_orb_survives_images_without_keypoints(cards):
    scans, ids, _ = cards
    method = ORBMethod(100, height=128).fit(scans, ids)
    flat = np.full((200, 150, 3), 128, np.uint8)
    assert list(method.scores(flat)) == [0.0] * len(ids)


def test_table_has_all_columns(cards, tmp_path):
    scans, ids, names = cards
    queries, query_ids, kinds = [], [], []
    for i, scan in enumerate(scans):
        for k in range(2):
            queries.append(simulate_crop(scan, np.random.default_rng([11, i, k]), PhotoParams.preset("easy"))); query_ids.append(ids[i]); kinds.append("simulated")
    queries.append(scans[0]); query_ids.append(ids[0]); kinds.append("real_photo")
    table = benchmark_methods([PHashMethod(8), ORBMethod(200, height=256), thumbnails()], scans, ids, queries, query_ids, kinds, names, {ids[-1]},
                              thresholds={"thumbnails": {"match_similarity": 0.9, "match_margin": 0.05, "uncertain_similarity": 0.5}})
    assert list(table.columns) == BENCH_COLUMNS
    assert list(table.method) == ["pHash 64-bit", "ORB 200 + RANSAC", "thumbnails"]
    fractions = table[["top1", "top1_name", "top5", "top1_heldout_sets", "top1_real_photos", "absent_rejected", "known_accepted_right"]]
    assert ((fractions >= 0) & (fractions <= 1)).all().all()
    assert (table.top5 >= table.top1).all() and (table.top1_name >= table.top1).all()
    assert (table.ms_p50 > 0).all() and (table.n_queries == len(queries)).all()
    assert list(table.thresholds) == ["chosen on these queries"] * 2 + ["reference DB"]
    assert table.attrs["thresholds"]["thumbnails"]["match_similarity"] == 0.9
    assert table.loc[table.method == "thumbnails", "model_bytes"].item() == 123
    markdown = markdown_table(table)
    assert markdown.count("\n") == 2 + len(table) and "top-1 real photos" in markdown and "%" in markdown
    plot_bench(table, tmp_path/"bench.png")
    assert Image.open(tmp_path/"bench.png").size[0] > 300


def test_verified_method_reranks_and_decides(cards):
    scans, ids, names = cards
    colour = lambda: EmbeddingMethod("frame colour", lambda images: images[:, :8].reshape(len(images), -1, 3).mean(1).astype(np.float32) - 100, size=64)
    thresholds = {"match_similarity": 0.9, "match_margin": 0.05, "uncertain_similarity": 0.5}
    plain, verified = colour().fit(scans, ids), VerifiedMethod(colour(), thresholds).fit(scans, ids)
    photos = [simulate_crop(scan, np.random.default_rng([4, i]), PhotoParams.preset("easy")) for i, scan in enumerate(scans)]
    right = lambda method: np.mean([method.rank(p, 1) == [c] for p, c in zip(photos, ids)])
    assert right(verified) >= 0.8 and right(verified) > right(plain)
    assert verified.index_bytes > plain.index_bytes and verified.name == "frame colour + verification"
    decisions = verified.open_set_decisions(photos, ids)
    assert set(decisions) == {"known", "correct", "unknown"} and all(len(v) == len(ids) for v in decisions.values())
    alone = np.array([sum(names[c] == names[i] for c in ids) == 1 for i in ids])
    assert (decisions["unknown"][alone] != "match").all()  # no reprint left in: nothing verifies
    scores = verified.scores(photos[0])
    assert scores.shape == (len(ids),) and np.sort(scores)[-1] > 1  # the verified top five sit above every cosine
    table = benchmark_methods([VerifiedMethod(colour(), thresholds)], scans, ids, photos, ids, names=names,
                              thresholds={"frame colour + verification": thresholds})
    assert table.thresholds.item() == "reference DB + verification"


def test_metrics_from_scores():
    scores = np.array([[.9, .2, .1], [.3, .8, .75], [.1, .2, .6], [.6, .5, .4]])
    metrics = ranking_metrics(scores, ["a", "b", "b", "c"], ["a", "b", "c"], {"a": "X", "b": "Y", "c": "Y"}, {"c"})
    assert metrics["top1"] == 0.5 and metrics["top5"] == 1.0 and metrics["top1_name"] == 0.75
    assert metrics["n_reprint_queries"] == 3 and metrics["top1_heldout_sets"] == 0.0
    unknown = open_set_stats(scores, ["a", "b", "b", "c"], ["a", "b", "c"], leave_out=True)
    assert not unknown["correct"].any() and list(unknown["predicted"]) == ["b", "c", "c", "a"]
    assert rank_cards(np.array([[1.0, -np.inf, 2.0]]), 3)[0].tolist() == [2, 0, 1]


def test_bad_inputs(cards):
    scans, ids, _ = cards
    with pytest.raises(PokecardError, match="reference images but"): PHashMethod().fit(scans, ids[:-1])
    with pytest.raises(PokecardError, match="distinct"): PHashMethod().fit(scans[:2], [ids[0], ids[0]])
    with pytest.raises(PokecardError, match="call fit"): PHashMethod().scores(scans[0])
    with pytest.raises(PokecardError, match="uint8 image array"): thumbnails().fit(scans, ids).scores(np.zeros((10, 10), np.float32))  # grey uint8 is fine (pokecard.images.rgb_array, the one coercion); floats are not
    with pytest.raises(PokecardError, match="unknown method"): build_methods(None, ["int8", "sift"])
    with pytest.raises(PokecardError, match="at least one simulated"): benchmark_methods([PHashMethod()], scans, ids, scans[:1], ids[:1], ["real_photo"])
    with pytest.raises(PokecardError, match="same length"): benchmark_methods([PHashMethod()], scans, ids, scans[:2], ids[:1])


def test_choose_queries_keeps_real_photos():
    queries = pd.DataFrame({"path": [f"q{i}" for i in range(10)], "card_id": list("abcdefghij"), "kind": ["simulated"] * 8 + ["real_photo"] * 2})
    chosen = choose_queries(queries, 3, seed=1)
    assert (chosen.kind == "simulated").sum() == 3 and (chosen.kind == "real_photo").sum() == 2
    assert choose_queries(queries, 3, seed=1).equals(chosen) and len(choose_queries(queries, 0)) == 10


def _ci_ready():
    experiment = load_params(ROOT/"params"/"ci.yaml")
    return experiment if all(stale_reason(experiment, s.name) is None for s in load_stages()[:6]) else None


def test_bench_cli_on_ci(tmp_path, capsys):
    if not (ROOT/"outputs"/"ci").is_dir() or (experiment := _ci_ready()) is None:
        pytest.skip("outputs/ci is missing or stale; run `pokecard run ci` first")
    from pokecard.cli import main
    assert main(["bench", str(ROOT/"params"/"ci.yaml"), "--out", str(tmp_path), "--max-queries", "10"]) == 0
    printed = capsys.readouterr().out
    for name in ("pokecard INT8 (ONNX)", "pokecard INT8 (ONNX) + verification", "pokecard fp32 (ONNX)", "EfficientNet-Lite0 ImageNet",
                 "pHash 64-bit", "pHash 256-bit", "ORB 500 + RANSAC"):
        assert name in printed
    assert {p.name for p in tmp_path.iterdir()} >= {"bench.md", "bench.csv", "bench.json", "bench.png"}
    table = pd.read_csv(tmp_path/"bench.csv")
    assert set(BENCH_COLUMNS) - {"top1_real_photos"} <= set(table.columns)
    assert (table.n_queries == 10).all() and (table.ms_p50 > 0).all()
    assert table.loc[table.method.str.startswith("pokecard"), "thresholds"].str.startswith("reference DB").all()
    report = json.loads((tmp_path/"bench.json").read_text())
    assert report["n_references"] == experiment.data.n_cards and report["threads"] == 1
    from pokecard.core import site_settings
    if (site_settings().data_root/"cards").is_dir():  # the real-card table: every method again, on the real scans and phone photos
        real = pd.read_csv(tmp_path/"bench_real.csv")
        assert list(real.method) == list(table.method) and real.top1_real_photos.between(0, 1).all()
        assert "### Real cards" in (tmp_path/"bench.md").read_text() and len(report["real_card_rows"]) == len(real)
    else: assert report["real_card_rows"] is None


def test_bench_cli_fresh_photos_at_a_preset(tmp_path, capsys):
    if not (ROOT/"outputs"/"ci").is_dir() or _ci_ready() is None:
        pytest.skip("outputs/ci is missing or stale; run `pokecard run ci` first")
    from pokecard.cli import main
    assert main(["bench", "ci", "--out", str(tmp_path), "--max-queries", "6", "--methods", "int8,int8+verify,phash8", "--preset", "hard"]) == 0
    assert "preset `hard`" in (tmp_path/"bench.md").read_text()
    table = pd.read_csv(tmp_path/"bench.csv")
    assert list(table.method) == ["pokecard INT8 (ONNX)", "pokecard INT8 (ONNX) + verification", "pHash 64-bit"] and (table.n_queries >= 6).all()
    capsys.readouterr()
    assert main(["bench", "ci", "--preset", "blurry"]) == 2
    assert "unknown photo preset 'blurry'; valid: clean, easy, medium, hard" in capsys.readouterr().err


def test_bench_cli_validation_split(tmp_path, capsys):
    "`--split validation` benchmarks other photos of the same cards (their own seeds, no phone photos) into their own folder; it needs --presets and is never written to a README."
    from pokecard.cli import main
    assert main(["bench", "ci", "--split", "validation"]) == 2
    assert "--split validation needs --presets" in capsys.readouterr().err
    assert main(["bench", "ci", "--split", "validation", "--presets", "hard", "--readme", str(tmp_path/"R.md")]) == 2
    assert "--readme reports results" in capsys.readouterr().err
    if not (ROOT/"outputs"/"ci").is_dir() or _ci_ready() is None:
        pytest.skip("outputs/ci is missing or stale; run `pokecard run ci` first")
    args = ["--max-queries", "4", "--methods", "int8,phash8", "--presets", "hard", "--no-real-cards"]
    assert main(["bench", "ci", "--out", str(tmp_path/"report"), *args]) == 0
    assert main(["bench", "ci", "--out", str(tmp_path/"validation"), "--split", "validation", *args]) == 0
    report, validation = (json.loads((tmp_path/split/"bench_presets.json").read_text()) for split in ("report", "validation"))
    assert (report["split"], validation["split"]) == ("report", "validation")
    assert "(validation photos)" in (tmp_path/"validation"/"bench_presets.md").read_text()
    assert [r["method"] for r in report["rows"]] == [r["method"] for r in validation["rows"]]


def test_readme_script_never_overwrites_a_hand_written_readme(tmp_path):
    "`make readme` replaces only a README it wrote (its first line names the notebook); a hand-written one is refused, and kept."
    import shutil, subprocess, sys
    (tmp_path/"nbs").mkdir(); (tmp_path/"scripts").mkdir()
    shutil.copy(ROOT/"nbs"/"index.ipynb", tmp_path/"nbs"); shutil.copy(ROOT/"scripts"/"readme.py", tmp_path/"scripts")
    (tmp_path/"README.md").write_text("# hand written\n")
    refused = subprocess.run([sys.executable, str(tmp_path/"scripts"/"readme.py")], capture_output=True, text=True)
    assert refused.returncode == 2 and "it would be lost" in refused.stderr and (tmp_path/"README.md").read_text() == "# hand written\n"
    assert subprocess.run([sys.executable, str(tmp_path/"scripts"/"readme.py"), "--force"], capture_output=True, text=True).returncode == 0
    assert (tmp_path/"README.md").read_text() == (ROOT/"README.md").read_text()  # the same text as the project's own
    assert subprocess.run([sys.executable, str(tmp_path/"scripts"/"readme.py")], capture_output=True, text=True).returncode == 0  # now it wrote it
