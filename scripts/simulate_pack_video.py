"""A simulated pack-opening video from card scans, for `pokecard video` and `pokecard serve --video`.

    python scripts/simulate_pack_video.py SCANS OUT.avi [--cards 6] [--seed 0] [--fps 10] [--preset easy]

Cards from the folder SCANS (`<card_id>.<ext>`, chosen with the seed) slide in one after another, are held (hand shake, a thumb
over the edge) and slide out, with motion blur (`pokecard.video.simulate_video_frames`). Prints the cards shown and their seconds.
"""
import argparse
from dataclasses import replace
import numpy as np
from pokecard.images import load_image, scan_image_folder
from pokecard.video import VideoParams, simulate_video_frames, write_video

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("scans"); parser.add_argument("out", help="the video to write (.avi or .mp4; an existing file is not overwritten)")
parser.add_argument("--cards", type=int, default=6); parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--fps", type=float, default=10.0); parser.add_argument("--preset", default="easy")
args = parser.parse_args()
from pathlib import Path
if Path(args.out).exists(): parser.error(f"{args.out} exists: give a new file name")
scans = scan_image_folder(args.scans)
if not scans: parser.error(f"no card scans in {args.scans}")
ids = sorted(scans)
chosen = [ids[i] for i in np.random.default_rng(args.seed).choice(len(ids), min(args.cards, len(ids)), replace=False)]
frames, truth = simulate_video_frames({c: load_image(scans[c][0]) for c in chosen}, seed=args.seed, params=replace(VideoParams(), fps=args.fps, preset=args.preset))
write_video(frames, args.out, args.fps)
print(f"{args.out}: {len(frames)} frames at {args.fps:g} fps")
for a in truth: print(f"  {a.card_id}  {a.first_s:.1f}-{a.last_s:.1f} s")
