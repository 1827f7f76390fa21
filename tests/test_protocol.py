"The validation/report protocol and the deploy-like training views: seeds never shared, choices never made on the reported split."
import dataclasses
import numpy as np, pandas as pd, pytest
from PIL import Image
from pokecard.core import PokecardError
from pokecard.params import Experiment
from pokecard.data import (DataBundle, PRESET_CODES, QUERY_PURPOSE, VALIDATION_PURPOSE, deploy_view, eval_presets, finder_error)
from pokecard.hardneg import keep_or_drop
from pokecard.photos import PhotoParams, simulate_framed, widen_damage


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    card = np.zeros((880, 630, 3), np.uint8); card[:] = (30, 60, 200); card[:300, :200] = (240, 240, 20)
    path = tmp_path_factory.mktemp("scan")/"t1-1.png"
    Image.fromarray(card).save(path)
    return str(path)


def test_seed_namespaces_differ():
    from pokecard.teacher import TRAIN_VIEW_PURPOSE
    from pokecard.hardneg import HARDNEG_PURPOSE
    assert len({QUERY_PURPOSE, VALIDATION_PURPOSE, TRAIN_VIEW_PURPOSE, HARDNEG_PURPOSE}) == 4
    assert set(PRESET_CODES) == {"easy", "medium", "hard"}


def test_eval_presets_default_and_errors():
    experiment = Experiment()
    assert eval_presets(experiment) == ["easy", "medium", "hard"]
    assert eval_presets(dataclasses.replace(experiment, data=dataclasses.replace(experiment.data, eval_presets=[]))) == [experiment.data.query_preset]
    with pytest.raises(PokecardError, match="unknown preset"):
        eval_presets(dataclasses.replace(experiment, data=dataclasses.replace(experiment.data, eval_presets=["blurry"])))


def test_bundle_split_names():
    table = pd.DataFrame({"path": ["a"], "card_id": ["x-1"], "kind": ["simulated"], "preset": ["hard"]})
    bundle = DataBundle(pd.DataFrame(), {}, table, None, table.assign(path="b"))
    assert bundle.split("validation").path[0] == "b" and bundle.split("queries").path[0] == "a"
    with pytest.raises(PokecardError, match="valid: queries, validation"): bundle.split("report")


def test_finder_error_is_a_few_pixels():
    corners = np.array([[10, 10], [160, 10], [160, 220], [10, 220]], np.float32)
    moved = np.stack([finder_error(corners, np.random.default_rng(k)) for k in range(400)])
    shift = np.abs(moved - corners).max(axis=(1, 2))
    assert shift.min() > 0 and np.median(shift) < 8 and shift.max() < 25


def test_deploy_view_is_deterministic_and_still_the_card(scan):
    clean = deploy_view(scan, None, 64)
    views = [deploy_view(scan, [3, k], 64) for k in range(12)]
    assert all(v.shape == (64, 64, 3) and v.dtype == np.uint8 for v in views)
    assert np.array_equal(views[0], deploy_view(scan, [3, 0], 64))
    assert np.median([np.abs(v.astype(int) - clean).mean() for v in views]) < 70
    assert len({v.tobytes() for v in views}) == 12


def test_framed_corners_match_the_card():
    card = np.zeros((200, 140, 3), np.uint8); card[:] = (200, 20, 20)
    frame, corners = simulate_framed(card, 1, dataclasses.replace(PhotoParams.preset("clean"), crop_margin=(0.2, 0.2), crop_source_height=(150, 150)))
    centre = corners.mean(0).round().astype(int)
    assert np.abs(frame[centre[1], centre[0]].astype(int) - (200, 20, 20)).max() < 5
    assert abs(np.linalg.norm(corners[3] - corners[0]) - 150) < 1


def test_widen_damage_widens_every_family():
    hard, wide = PhotoParams.preset("hard"), widen_damage(PhotoParams.preset("hard"))
    assert wide.exposure[0] < hard.exposure[0] and wide.exposure[1] > hard.exposure[1]
    assert wide.gamma[0] < hard.gamma[0] and wide.color_cast > hard.color_cast and wide.noise_sigma[1] > hard.noise_sigma[1]
    assert wide.defocus_radius[1] > hard.defocus_radius[1] and wide.motion_length[1] > hard.motion_length[1]
    assert wide.jpeg_quality[0] < hard.jpeg_quality[0] and wide.crop_rotation_deg > hard.crop_rotation_deg


def test_stage2_only_deployed_when_better_on_validation():
    assert keep_or_drop({"val_top1": 0.7, "top1": 0.1}, {"val_top1": 0.6, "top1": 0.9})["deployed"] == "stage1"  # reported top1 plays no part
    assert keep_or_drop({"val_top1": 0.6}, {"val_top1": 0.7})["deployed"] == "stage2"
