"Bad inputs, edge sizes, thread safety and the real scan for `pokecard.photos` (the notebook covers the main behaviour)."
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pokecard.core import PokecardError
from pokecard.photos import PhotoParams, card_arrays, camera_effects, render_background, simulate_crop, simulate_scene

CARD = np.zeros((140, 100, 3), np.uint8) + np.array([200, 40, 40], np.uint8)


def data_root():
    root = Path(os.environ.get("POKECARD_DATA_ROOT", Path(__file__).resolve().parents[2]/"shared"/"data"))
    return root if (root/"cards"/"xy12"/"xy12-20.webp").is_file() else None


@pytest.mark.parametrize("bad", [CARD.astype(np.float32), CARD[..., :2], np.zeros((4, 4, 3), np.uint8), np.zeros((10, 10, 3, 1), np.uint8)])
def test_bad_card_is_a_clear_error(bad):
    with pytest.raises(PokecardError, match="card image must be uint8"): simulate_crop(bad, 0)
    with pytest.raises(PokecardError, match="card image must be uint8"): simulate_scene([CARD, bad], 0)


@pytest.mark.parametrize("kwargs, message", [(dict(noise_sigma=(3.0,)), "lo <= hi"), (dict(jpeg_prob=-0.1), "probability"),
                                             (dict(scene_layout_weights={"pile": 1.0}), "valid: row, grid, scatter"),
                                             (dict(background_weights={"wood": 0.0}), "at least one weight")])
def test_bad_params_are_clear_errors(kwargs, message):
    with pytest.raises(PokecardError, match=message): PhotoParams(**kwargs)


@pytest.mark.parametrize("mode", ["L", "P", "LA", "RGBA", "RGB"])
def test_pil_modes(mode):
    image = Image.fromarray(CARD).convert(mode)
    rgb, alpha = card_arrays(image)
    assert rgb.shape == (140, 100, 3) and alpha is None  # every alpha here is opaque
    assert simulate_crop(image, 0).mode == "RGB"


def test_inputs_are_not_modified():
    card = CARD.copy()
    rgba = np.dstack([card, np.full(card.shape[:2], 128, np.uint8)])
    before = rgba.copy()
    simulate_crop(rgba, 0, PhotoParams.preset("hard")); simulate_scene([rgba], 0, PhotoParams.preset("hard"), size=(320, 240))
    assert np.array_equal(rgba, before)


@pytest.mark.parametrize("size", [(64, 48), (48, 64), (2100, 300)])  # tiny, portrait, wider than the noise tile
def test_scene_sizes(size):
    photo, quads = simulate_scene([CARD, CARD], 3, PhotoParams.preset("hard"), size=size)
    assert photo.size == size
    for quad in quads: assert (quad >= 0).all() and (quad[:, 0] <= size[0]).all() and (quad[:, 1] <= size[1]).all()


def test_generator_advances_and_seeds_repeat():
    rng = np.random.default_rng(5)
    a, b = np.asarray(simulate_crop(CARD, rng)), np.asarray(simulate_crop(CARD, rng))
    assert not np.array_equal(a, b)
    assert np.array_equal(a, np.asarray(simulate_crop(CARD, np.random.default_rng(5))))


def test_same_pixels_across_threads():
    expected = [np.asarray(simulate_crop(CARD, seed, PhotoParams.preset("hard"))) for seed in range(8)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda seed: np.asarray(simulate_crop(CARD, seed, PhotoParams.preset("hard"))), range(8)))
    assert all(np.array_equal(e, g) for e, g in zip(expected, got))


def test_background_and_camera_shapes():
    desk = render_background(0, (33, 17))
    assert desk.shape == (17, 33, 3) and desk.dtype == np.uint8
    assert camera_effects(desk, 0, PhotoParams.preset("hard")).shape == desk.shape


def test_real_scan():
    root = data_root()
    if root is None: pytest.skip("real data (../shared/data) not present")
    scan = Image.open(root/"cards"/"xy12"/"xy12-20.webp")
    crop = simulate_crop(scan, 0, PhotoParams.preset("hard"))
    assert 320 <= crop.height <= 448 and abs(crop.width/crop.height - scan.width/scan.height) < 0.01
    photo, quads = simulate_scene([scan], 0, PhotoParams.preset("hard"))
    assert photo.size == (1280, 960) and len(quads) == 1
