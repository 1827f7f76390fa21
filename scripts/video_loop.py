"""The camera loop on simulated 640x480 videos: frames/s and ms per frame, with and without the still-frame gate.

    python scripts/video_loop.py --db DB --scans SCANS [--cards 3] [--fps 30]

Makes two videos of the same cards with `pokecard.video.simulate_video_frames` (on a stand: no hand shake; hand-held: 2 px
shake per frame), writes them as MJPG .avi files in a temporary folder and runs `pokecard.pi.video_frame_rate` over the frames
read back from each file (decoding included, as a camera loop reads its frames), beside the bare model forward in the same run.
"""
import argparse, tempfile
from dataclasses import replace
from pathlib import Path
from pokecard.images import load_image, scan_image_folder
from pokecard.pi import Recognizer, camera_frames, model_floor, video_frame_rate
from pokecard.video import VideoParams, simulate_video_frames, write_video

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--db", required=True); parser.add_argument("--scans", required=True)
parser.add_argument("--cards", type=int, default=3); parser.add_argument("--fps", type=float, default=30.0)
parser.add_argument("--threads", type=int, default=2); parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
scans = scan_image_folder(args.scans)
chosen = {c: load_image(scans[c][0]) for c in sorted(scans)[:: max(1, len(scans)//args.cards)][:args.cards]}
recognizer = Recognizer(args.db, threads=args.threads)
floor = model_floor(recognizer)
rows = []
with tempfile.TemporaryDirectory() as tmp:
    for kind, shake in (("on a stand", 0.0), ("hand-held", 2.0)):
        params = replace(VideoParams(), fps=args.fps, hold_s=3.0, shake_px=shake)
        frames, _ = simulate_video_frames(chosen, seed=args.seed, params=params)
        video = write_video(frames, Path(tmp)/f"{shake}.avi", args.fps)
        for still in (False, True):
            r = video_frame_rate(recognizer, camera_frames(video=str(video)), still=still)
            rows.append((kind, "on" if still else "off", r))
print(f"bare forward p50 {floor['p50']:.1f} ms ({args.threads} threads); {len(chosen)} cards, each held 3 s, {args.fps:g} fps, 640x480\n")
print("| video | still-frame gate | frames | recognised | frames/s | ms per recognised frame p50 | ms per still frame p50 |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for kind, gate, r in rows:
    still = "–" if r["still_ms_p50"] is None else f"{r['still_ms_p50']:.2f}"
    print(f"| {kind} | {gate} | {r['frames']} | {r['recognised']} | {r['frames_per_s']:.1f} | {r['recognised_ms_p50']:.1f} | {still} |")
