"Forge tests that do not belong in the notebook: bad input, catalog invariants over many sizes, dataset re-runs."
import json, os
from pathlib import Path
import pytest
from pokecard.core import PokecardError
from pokecard.forge import (CARD_H, CARD_W, FOILS, FRAMES, MANIFEST_NAME, RARITIES, SUPERTYPES, card_record,
                            forge_catalog, forge_dataset, render_card, set_records)

def data_root():
    root = Path(os.environ.get("POKECARD_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return root if (root / "metadata" / "sets" / "en.json").is_file() else None

@pytest.mark.parametrize("n_cards,n_sets,fraction", [(0, 1, 0.3), (3, 0, 0.3), (3, 4, 0.3), (5, 2, -0.1), (5, 2, 1.5), (2.5, 1, 0.3)])
def test_bad_requests_raise(n_cards, n_sets, fraction):
    with pytest.raises(PokecardError): forge_catalog(n_cards, n_sets, reprint_fraction=fraction)

@pytest.mark.parametrize("n_cards,n_sets,fraction,seed", [(1, 1, 0.3, 0), (5, 5, 1.0, 1), (8, 2, 1.0, 2), (50, 3, 0.0, 3),
                                                          (200, 9, 0.5, 4), (333, 12, 0.3, 5)])
def test_catalog_invariants(n_cards, n_sets, fraction, seed):
    cards = forge_catalog(n_cards, n_sets, seed, fraction)
    assert len(cards) == n_cards and len({c.card_id for c in cards}) == n_cards
    for set_id in {c.set_id for c in cards}:  # numbers run 1..total in every set
        numbers = sorted(c.number for c in cards if c.set_id == set_id)
        assert numbers == list(range(1, len(numbers) + 1))
        assert {c.total for c in cards if c.set_id == set_id} == {len(numbers)}
    assert len({c.set_id for c in cards}) == n_sets
    groups = {}
    for c in cards: groups.setdefault(c.artwork_id, []).append(c)
    for group in groups.values():  # a reprint group: one name and text, distinct sets
        assert len({c.set_id for c in group}) == len(group)
        assert len({(c.name, c.supertype, c.hp, str(c.attacks)) for c in group}) == 1
    if fraction == 0: assert all(len(g) == 1 for g in groups.values())
    for c in cards:
        assert c.rarity in RARITIES and c.foil in FOILS and c.frame in FRAMES and c.supertype in SUPERTYPES
        assert (c.hp is not None) == (c.supertype == "Pokémon") and bool(c.types) == (c.supertype == "Pokémon")

def test_eras_and_dates_follow_set_order():
    sets = set_records(forge_catalog(90, 9, seed=7))
    assert [s["id"] for s in sets] == sorted(s["id"] for s in sets)
    assert [s["releaseDate"] for s in sets] == sorted(s["releaseDate"] for s in sets)

def test_every_supertype_renders():
    cards = forge_catalog(80, 4, seed=11)
    for supertype in SUPERTYPES:
        for foil in FOILS:
            for card in [c for c in cards if c.supertype == supertype and c.foil == foil][:1]:
                image = render_card(card)
                assert image.size == (CARD_W, CARD_H) and image.mode == "RGB"

def test_dataset_rerun_corrupt_manifest_and_stale_files(tmp_path):
    cards = forge_dataset(tmp_path, n_cards=6, n_sets=2, seed=1)
    pngs = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.png")}
    assert len(pngs) == 6
    (tmp_path / MANIFEST_NAME).write_text("{not json")  # a corrupt manifest costs a re-render, not a crash
    forge_dataset(tmp_path, n_cards=6, n_sets=2, seed=1)
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["cards"].keys() == {c.card_id for c in cards}
    (tmp_path / f"{cards[0].card_id}.png").write_bytes(b"damaged")  # a damaged PNG is re-rendered
    forge_dataset(tmp_path, n_cards=6, n_sets=2, seed=1)
    assert (tmp_path / f"{cards[0].card_id}.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "mine.png").write_bytes(b"x")  # files the forge did not write are left alone
    forge_dataset(tmp_path, n_cards=3, n_sets=1, seed=2)
    assert len(list(tmp_path.glob("*.png"))) == 4 and (tmp_path / "mine.png").exists()
    assert not list(tmp_path.rglob("*.tmp"))

def test_metadata_uses_the_real_key_names():
    root = data_root()
    if root is None: pytest.skip("no ../shared/data")
    real_card_keys = set()
    for path in (root / "metadata" / "cards" / "en").glob("*.json"):
        for card in json.loads(path.read_text()): real_card_keys |= set(card)
    real_set_keys = {k for s in json.loads((root / "metadata" / "sets" / "en.json").read_text()) for k in s}
    cards = forge_catalog(60, 3, seed=0)
    for card in cards: assert set(card_record(card)) - {"forge"} <= real_card_keys
    for s in set_records(cards): assert set(s) <= real_set_keys
    real_rarities = {c.get("rarity") for p in (root / "metadata" / "cards" / "en").glob("*.json") for c in json.loads(p.read_text())}
    assert set(RARITIES) <= real_rarities
