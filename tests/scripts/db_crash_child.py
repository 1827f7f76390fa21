"""Run one `pokecard index` command (or a stage-07 style `set_thresholds`) and die hard, with no clean-up, just before write step N.

`python db_crash_child.py N JOB.json`: JOB is {"argv": [...]} for `pokecard index`, or {"thresholds": {...}, "db": path};
"no_exchange": true swaps folders the way systems without renameat2 do.
Every call that writes, renames, links or removes a file or folder, or flushes one to disk, is a step; before step N the
process ends with os._exit(86) (no finally blocks, no atexit), as a kill or a power cut would. N = 0 never crashes and
prints the number of steps the command took."""
import json, os, shutil, sys, tempfile

crash_at, job = int(sys.argv[1]), json.loads(open(sys.argv[2]).read())
from pokecard import refdb
from pokecard.index import index_main
if job.get("no_exchange"): refdb._exchange_dirs = lambda a, b: False  # a system without renameat2: two renames through .NAME.previous

steps, trace = 0, []
def step(function):
    def wrapped(*args, **kwargs):
        global steps
        steps += 1
        if steps == crash_at: os._exit(86)
        trace.append(f"{function.__name__}({', '.join(os.path.basename(str(a)) for a in args[:2] if isinstance(a, (str, os.PathLike)))})")
        return function(*args, **kwargs)
    return wrapped

for module, name in [(os, "replace"), (os, "rename"), (os, "link"), (os, "unlink"), (os, "rmdir"), (os, "fsync"), (os, "mkdir"),
                     (os, "chmod"), (shutil, "copyfile"), (tempfile, "mkdtemp"), (refdb, "_exchange_dirs"), (refdb, "_save_index")]:
    setattr(module, name, step(getattr(module, name)))

if "argv" in job: index_main(job["argv"])
else: refdb.set_thresholds(job["db"], job["thresholds"])
print(json.dumps({"steps": steps, "trace": trace}))
