"Regression: onnxruntime after usearch used to segfault `pokecard index build` (pyarrow/pandas loaded, then usearch, then onnxruntime)."
import subprocess, sys

def test_onnxruntime_loads_after_the_index_modules():
    code = "import pokecard.refdb, pokecard.catalog, pokecard.index; import onnxruntime; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])
