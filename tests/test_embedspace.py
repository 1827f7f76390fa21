"Embedding-space analysis: import hygiene for the Pi, UMAP (once), bad input, and edge cases of the open-set rule."
import json, math, subprocess, sys
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from pokecard.core import PokecardError
from pokecard.embedspace import align_catalog, subsample_rows, reprint_groups, plot_map, pca_map, tsne_map, umap_map, umap_coords, pca_coords, tsne_coords, distance_stats, plot_thresholds, confusable_pairs, near_duplicate_pairs, confusable_gallery, kmeans_report, isolation_review, review_gallery, knn_distance
from pokecard.decision import synthetic_space, decide, decide_many, check_thresholds, margin_stats, unknown_stats, choose_thresholds, threshold_report

RULE = {"match_similarity": 0.9, "match_margin": 0.05, "uncertain_similarity": 0.7}


@pytest.fixture(scope="module")
def space():
    return synthetic_space()


def is_png(path):
    with Image.open(path) as image: return image.format == "PNG" and min(image.size) > 100


@pytest.mark.parametrize("module", ["pokecard.decision", "pokecard.embedspace"])
def test_import_pulls_no_heavy_modules(module):
    "The Pi imports `decide` from pokecard.decision: no torch, sklearn, umap, matplotlib or pandas may come with it (nor with importing the analysis module)."
    code = (f"import sys, json; import {module}; from pokecard.decision import decide; "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'umap', 'matplotlib', 'pandas', 'numba', 'scipy'}); "
            "print(json.dumps([heavy, decide(0.95, 0.5, {'match_similarity': .9, 'match_margin': .05, 'uncertain_similarity': .7})]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, decision = json.loads(result.stdout.strip().splitlines()[-1])
    assert heavy == [], f"importing {module} imported {heavy}"
    assert decision == "match"


def test_umap_map_runs_and_handles_small_n(space, tmp_path):
    "UMAP (slow to JIT: exercised here once) on the 48-card space, its tiny-input caps, and its refusal below 4 points."
    catalog, refs = space["catalog"], space["reference_embeddings"]
    coords = umap_map(refs, catalog, tmp_path / "umap.png", colour_by="rarity", highlight_groups=reprint_groups(catalog), n_neighbors=15, seed=0)
    assert coords.shape == (48, 2) and np.isfinite(coords).all() and is_png(tmp_path / "umap.png")
    # same seed, same map
    np.testing.assert_allclose(umap_coords(refs, n_neighbors=15, seed=0), coords, atol=1e-4)
    # n_neighbors is capped below n
    assert umap_coords(refs[:5], n_neighbors=15).shape == (5, 2)
    # clustered sets stay together: each card's nearest map neighbour is mostly in its own set
    sets = catalog.set_id.to_numpy()
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1); np.fill_diagonal(distances, np.inf)
    assert (sets[distances.argmin(1)] == sets).mean() > 0.8
    with pytest.raises(PokecardError, match="at least 4 rows"): umap_coords(refs[:3])


def test_maps_reject_bad_input(space, tmp_path):
    catalog, refs = space["catalog"], space["reference_embeddings"]
    with pytest.raises(PokecardError, match="align"): pca_map(refs[:10], catalog, tmp_path / "a.png")
    with pytest.raises(PokecardError, match="not a catalog column"): pca_map(refs, catalog, tmp_path / "a.png", colour_by="hp")
    with pytest.raises(PokecardError, match="2-D"): pca_coords(refs[0])
    with pytest.raises(PokecardError, match="NaN"): tsne_coords(np.full((6, 4), np.nan))
    with pytest.raises(PokecardError, match=r"\(n, 2\)"): plot_map(refs[:, :3], catalog, tmp_path / "a.png")
    assert not list(tmp_path.iterdir()), "a failed plot left a file behind"


def test_maps_write_png_into_new_folders(space, tmp_path):
    catalog, refs = space["catalog"], space["reference_embeddings"]
    path = tmp_path / "deep" / "er" / "pca.png"
    coords = pca_map(refs, catalog, path, colour_by="supertype", highlight_groups={"ghost": ["not-a-card"], "mon0": ["s0-1", "s1-8"]})
    assert coords.shape == (48, 2) and is_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["pca.png"]  # no temp file left
    assert tsne_map(refs[:4], catalog.iloc[:4], tmp_path / "tsne4.png").shape == (4, 2)  # perplexity capped below n


def test_align_and_subsample(space):
    aligned = align_catalog(space["catalog"], space["query_ids"][::-1])
    assert list(aligned.card_id) == space["query_ids"][::-1]
    rows = subsample_rows(20_000, 2000, keep=range(0, 20_000, 10), seed=1)
    assert len(rows) == 2000 and set(range(0, 20_000, 10)) <= set(rows)
    np.testing.assert_array_equal(subsample_rows(10, 2000), np.arange(10))


def test_distance_stats_multiple_views_and_chunks(space):
    refs, ids = space["reference_embeddings"], space["reference_ids"]
    queries, query_ids = space["query_embeddings"], space["query_ids"]
    two_views = np.concatenate([refs, queries]); two_ids = ids + query_ids
    whole = distance_stats(queries, query_ids, two_views, two_ids, names=space["names"])
    blocks = distance_stats(queries, query_ids, two_views, two_ids, names=space["names"], chunk=5)
    for key, value in whole.items(): assert blocks[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    assert whole["n_intra_pairs"] == 96 and whole["n_inter_pairs"] == 48 * 94
    assert whole["separation_ratio"] > 10
    # no reprints, no names: reprint statistics are absent or None, never NaN
    plain = distance_stats(queries, query_ids, refs, ids, names={c: c for c in ids})
    assert plain["n_reprint_inter_pairs"] == 0 and plain["reprint_inter_mean"] is None and plain["reprint_separation_ratio"] is None
    assert "reprint_inter_mean" not in distance_stats(queries, query_ids, refs, ids)
    # queries of cards missing from the references only count as inter
    outside = distance_stats(queries, ["new-card"] * len(queries), refs, ids)
    assert outside["n_intra_pairs"] == 0 and outside["intra_mean"] is None and outside["separation_ratio"] is None
    json.dumps(whole, allow_nan=False)  # manifest-ready


def test_decide_rule_edges():
    assert decide(0.9, 0.85, RULE) == "match"  # both thresholds are inclusive
    assert decide(0.9, 0.86, RULE) == "uncertain"
    assert decide(0.7, 0.0, RULE) == "uncertain" and decide(0.6999, 0.0, RULE) == "unknown"
    assert decide(0.95, float("-inf"), RULE) == "match" and decide(float("inf"), 0.1, RULE) == "unknown"
    rng = np.random.default_rng(0)
    top1 = rng.uniform(0.5, 1.0, 500); top2 = top1 - rng.uniform(0, 0.2, 500)
    top1[::50] = np.nan; top2[::60] = np.nan
    expected = [decide(a, None if np.isnan(b) else b, RULE) for a, b in zip(top1, top2)]
    assert list(decide_many(top1, top2, RULE)) == expected
    with pytest.raises(PokecardError, match="lack"): check_thresholds({"match_similarity": 0.9})
    with pytest.raises(PokecardError, match="must be lower"): decide_many([0.9], [0.1], dict(RULE, uncertain_similarity=0.95))


def test_scores_reject_too_few_cards_and_unknown_queries(space):
    refs, ids = space["reference_embeddings"], space["reference_ids"]
    with pytest.raises(PokecardError, match="at least 3 different cards"): margin_stats(refs[:2], ids[:2], refs[:2], ids[:2])
    with pytest.raises(PokecardError, match="unknown_stats"): margin_stats(refs[:1], ["zzz-1"], refs, ids)
    unknown = unknown_stats(refs[:1], ["zzz-1"], refs, ids)  # a card the index never held
    assert unknown["predicted"][0] == ids[0] and not unknown["correct"][0]
    with pytest.raises(PokecardError, match="ids for"): unknown_stats(refs, ids[:-1], refs, ids)


def test_choose_thresholds_separable_and_hopeless():
    rng = np.random.default_rng(0)
    def stats(top1, margin, correct): return {"top1": np.asarray(top1), "top2": np.asarray(top1) - np.asarray(margin), "margin": np.asarray(margin), "correct": np.asarray(correct)}
    known = stats(rng.uniform(0.95, 1.0, 200), rng.uniform(0.05, 0.3, 200), np.ones(200, bool))
    unknown = stats(rng.uniform(0.5, 0.8, 200), rng.uniform(0.0, 0.3, 200), np.zeros(200, bool))
    t = choose_thresholds(known, unknown)
    assert 0.8 < t["match_similarity"] <= known["top1"].min() and t["match_margin"] <= known["margin"].min()
    assert t["uncertain_similarity"] <= t["match_similarity"]
    report = threshold_report(known, unknown, t)
    assert report["known_match_rate"] == 1.0 and report["unknown_match_rate"] == 0.0 and report["match_precision"] == 1.0
    # unknowns indistinguishable from knowns: the rule may only accept what the unknown budget allows
    same = stats(known["top1"], known["margin"], np.zeros(200, bool))
    t = choose_thresholds(known, same, target_unknown_accept=0.05)
    assert threshold_report(known, same, t)["unknown_match_rate"] <= 0.05
    with pytest.raises(PokecardError, match="empty"): choose_thresholds(known, stats([], [], []))


def test_threshold_plot_and_galleries(space, tmp_path):
    refs, ids, q, qids = space["reference_embeddings"], space["reference_ids"], space["query_embeddings"], space["query_ids"]
    known, unknown = margin_stats(q, qids, refs, ids), unknown_stats(q, qids, refs, ids)
    assert is_png(plot_thresholds(known, unknown, choose_thresholds(known, unknown), tmp_path / "t.png"))
    def broken(card_id): raise OSError(f"cannot read {card_id}")
    pairs = confusable_pairs(refs, ids, k=2)
    assert is_png(confusable_gallery(pairs, broken, tmp_path / "c.png"))  # unreadable images become tiles, not errors
    with pytest.raises(PokecardError, match="no pairs"): confusable_gallery([], broken, tmp_path / "x.png")
    with pytest.raises(PokecardError, match="empty"): review_gallery([], broken, tmp_path / "x.png")


def test_pairs_with_several_rows_per_card(space):
    refs, ids = space["reference_embeddings"], space["reference_ids"]
    rows = np.concatenate([refs, refs[:4]]); row_ids = ids + ids[:4]  # a second, identical scan of 4 cards
    assert near_duplicate_pairs(rows, row_ids) == []  # the same card twice is not a duplicate
    pairs = confusable_pairs(rows, row_ids, k=10)
    assert len({(p["card_a"], p["card_b"]) for p in pairs}) == 10 and all(p["card_a"] != p["card_b"] for p in pairs)


def test_review_finds_planted_problems(space, tmp_path):
    refs, ids = space["reference_embeddings"].copy(), list(space["reference_ids"])
    refs[5] = refs[40] * 1.01  # the same scan under two ids (scale doesn't matter: cosine)
    refs[33] = -refs[12]  # a scan unlike any card
    review = isolation_review(refs, ids, None, tmp_path / "review.png", contamination=0.02)
    flagged = {r["card_id"]: r for r in review}
    assert flagged[ids[5]]["duplicate_of"] == ids[40] and flagged[ids[40]]["duplicate_of"] == ids[5]
    assert flagged[ids[5]]["duplicate_similarity"] > 0.999
    assert [r["card_id"] for r in review if r["outlier"]] == [ids[33]]
    assert is_png(tmp_path / "review.png")
    assert knn_distance(refs).argmax() == 33
    with pytest.raises(PokecardError, match="contamination"): isolation_review(refs, ids, None, None, contamination=0.7)


def test_kmeans_report_small_and_misaligned(space):
    catalog, refs = space["catalog"], space["reference_embeddings"]
    report = kmeans_report(refs[:5], catalog.iloc[:5], k=8)
    assert report["k"] == 4 and len(report["labels"]) == 5 and len(report["clusters"]) == 4
    with pytest.raises(PokecardError, match="align"): kmeans_report(refs, catalog.iloc[:5])
