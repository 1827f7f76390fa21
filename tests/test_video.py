"`pokecard video`: a simulated pack opening (motion blur, a thumb over the card) lists each card once with its interval, `--json` gives one object per card with card_id, a card flashed for a frame or two adds no phantom, precision/recall scoring, bad input gives one line."
import json
from pathlib import Path
import numpy as np, pytest
from dataclasses import replace
from pokecard.cli import main
from pokecard.forge import forge_catalog, render_card
from pokecard.index import build_reference_db
from pokecard.pi import Recognizer
from pokecard.testing import thumbnail_model
from pokecard.video import Appearance, VideoCard, VideoParams, score_video, simulate_video_frames, video_cards, write_video, measure_videos

PARAMS = VideoParams(size=(480, 360), fps=8, hold_s=1.0, move_s=0.4, gap_s=0.25)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    cards = forge_catalog(6, 2, seed=11)
    scans = {c.card_id: render_card(c) for c in cards}
    for card_id, scan in scans.items(): scan.save(root/f"{card_id}.png")
    metadata = {c.card_id: {"name": c.name, "set_id": c.set_id, "number": str(c.number)} for c in cards}
    db, _ = build_reference_db({c: [root/f"{c}.png"] for c in scans}, metadata, thumbnail_model(root/"thumb.onnx"), root/"db", "onnx-fp32", keypoints=False)
    shown = {c: scans[c] for c in list(scans)[1:4]}
    frames, truth = simulate_video_frames(shown, seed=3, params=PARAMS)
    video = write_video(frames, root/"pack.mp4", PARAMS.fps)
    return dict(root=root, db=db, scans=scans, shown=shown, frames=frames, truth=truth, video=video, recognizer=Recognizer(db, verification="off"))


def test_simulated_video_has_blur_and_the_truth_intervals(kit):
    truth = kit["truth"]
    assert [a.card_id for a in truth] == list(kit["shown"])
    assert all(b.first_s > a.last_s for a, b in zip(truth, truth[1:]))
    sharpness = [float(np.var(np.diff(f.astype(np.float32).mean(2), axis=1))) for f in kit["frames"][:12]]
    assert min(sharpness[1:3]) < 0.7 * max(sharpness[4:10])  # sliding in is blurred, held is sharp


def test_cli_lists_each_card_once_with_its_interval(kit, capsys):
    code = main(["video", str(kit["video"]), "--db", str(kit["db"]), "--json"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    records = [json.loads(line) for line in lines]
    assert [r["card_id"] for r in records] == list(kit["shown"])
    for record, appearance in zip(records, kit["truth"]):
        assert set(record) >= {"card_id", "name", "set_id", "number", "first_s", "last_s", "frames", "similarity", "decision"}
        assert appearance.first_s - 0.5 <= record["first_s"] <= record["last_s"] <= appearance.last_s + 0.5
        assert record["frames"] >= 3 and 0 < record["similarity"] <= 1
    found = [VideoCard(**r) for r in records]
    assert score_video(found, kit["truth"]) == {"shown": 3, "listed": 3, "true_positives": 3, "phantoms": 0, "missed": 0, "precision": 1.0, "recall": 1.0}


def test_a_card_flashed_for_two_frames_is_not_listed(kit):
    frames = list(kit["frames"])
    flashed = list(kit["scans"])[5]
    flash, _ = simulate_video_frames({flashed: kit["scans"][flashed]},
                                     seed=9, params=VideoParams(size=PARAMS.size, fps=PARAMS.fps, hold_s=0.25, move_s=0.125, gap_s=0.125, thumb_prob=0))
    mixed = frames[:30] + flash + frames[30:]
    found = video_cards(kit["recognizer"], mixed, PARAMS.fps)
    assert flashed not in [c.card_id for c in found]
    assert [c.card_id for c in found] == list(kit["shown"])


def test_every_nth_frame_keeps_the_video_timestamps(kit):
    found = video_cards(kit["recognizer"], kit["frames"], PARAMS.fps, smooth=3, min_frames=2, every=2)
    assert [c.card_id for c in found] == list(kit["shown"])
    assert found[-1].last_s > kit["truth"][-1].first_s


def test_scoring_counts_phantoms_and_misses():
    truth = [Appearance("a-1", 0, 2), Appearance("b-1", 3, 5)]
    found = [VideoCard("a-1", None, None, None, 0.5, 1.5, 9, 0.9, "match"), VideoCard("c-1", None, None, None, 3, 4, 3, 0.7, "uncertain"),
             VideoCard("b-1", None, None, None, 9, 10, 3, 0.8, "match")]  # b-1 at the wrong time is no hit
    score = score_video(found, truth)
    assert (score["true_positives"], score["phantoms"], score["missed"]) == (1, 2, 1)
    assert score["precision"] == pytest.approx(1/3) and score["recall"] == 0.5


def test_measure_videos_reports_precision_and_recall(kit):
    report = measure_videos(kit["recognizer"], kit["scans"], videos=1, cards_per_video=2, seed=1, params=PARAMS)
    assert report["shown"] == 2 and 0 <= report["precision"] <= 1 and report["recall"] == report["true_positives"]/2


def test_bad_input_gives_one_line(kit, tmp_path, capsys):
    assert main(["video", str(tmp_path/"none.mp4"), "--db", str(kit["db"])]) == 2
    assert "no video file" in capsys.readouterr().err
    (tmp_path/"junk.mp4").write_bytes(b"not a video at all")
    assert main(["video", str(tmp_path/"junk.mp4"), "--db", str(kit["db"])]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("pokecard video")]  # (log lines of the recogniser may come before it)
    assert len(errors) == 1 and "cannot open video" in errors[0], err
    assert main(["video", str(kit["video"]), "--db", str(kit["root"])]) == 2  # a folder that is not a DB
    assert "not a pokecard reference DB" in capsys.readouterr().err


def test_the_camera_loop_skips_still_frames_and_keeps_the_reading(kit):
    "A card on a stand (no shake, one light, fresh sensor noise per frame): the still-frame gate recognises the frames where something moved and keeps their reading for the rest; the smoothed tracks agree with recognising every frame."
    from pokecard.pi import CardTracker, StillFrames, camera_step, video_frame_rate
    stand = VideoParams(size=PARAMS.size, fps=15, hold_s=2.0, move_s=0.4, gap_s=0.2, shake_px=0.0, thumb_prob=0.0)
    frames, _ = simulate_video_frames({c: kit["scans"][c] for c in list(kit["scans"])[:2]}, seed=4, params=stand)
    gated, every, gate = CardTracker(5), CardTracker(5), StillFrames()
    readings = [([t.card_id for t in camera_step(kit["recognizer"], gated, f, gate)], [t.card_id for t in camera_step(kit["recognizer"], every, f)]) for f in frames]
    held = 2*round(stand.hold_s*stand.fps)
    assert gate.skipped >= 0.7*held, (gate.skipped, held)  # most held frames are not recognised again
    assert sum(a == b for a, b in readings) >= 0.9*len(frames)
    loop = video_frame_rate(kit["recognizer"], frames)
    assert loop["frames"] == len(frames) and loop["recognised"] == len(frames) - gate.skipped
    assert loop["still_ms_p50"] is not None and loop["recognised_ms_p50"] is not None
    shaken = video_frame_rate(kit["recognizer"], simulate_video_frames({c: kit["scans"][c] for c in list(kit["scans"])[:2]}, seed=4, params=replace(stand, shake_px=3.0))[0])
    assert shaken["recognised"] > loop["recognised"]  # a hand-held card moves: more frames are read
