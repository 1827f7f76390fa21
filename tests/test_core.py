"Params validation, site-setting overrides and atomic writes under a simulated crash."
import json, os, subprocess, sys, textwrap
from pathlib import Path
import pytest
from pokecard.core import PokecardError, site_settings, atomic_write_json
from pokecard.params import load_params, Experiment, experiment_from_dict, params_dict
from pokecard.pipeline import load_stages

ROOT = Path(__file__).resolve().parents[1]

@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT/"params").glob("*.yaml")))
def test_shipped_params_are_valid(name):
    experiment = load_params(ROOT/"params"/name)
    assert experiment.run and experiment_from_dict(params_dict(experiment)) == experiment

@pytest.mark.parametrize("yaml_text, expected", [
    ("distill:\n  learning_rate: 0.1\n", ["unknown parameter 'learning_rate'", "bad.yaml [distill]", "valid: backbone"]),
    ("trainer:\n  epochs: 1\n", ["unknown parameter 'trainer'", "bad.yaml", "valid: run, seed, extends, data"]),
    ("distill:\n  epochs: two\n", ["parameter 'epochs'", "must be int", "'two'"]),
    ("distill:\n  epochs: 1.5\n", ["parameter 'epochs'", "must be int"]),
    ("quantize:\n  per_channel: 1\n", ["parameter 'per_channel'", "must be bool"]),
    ("distill:\n  lr: 1e-3\n", ["must be float", "1.0e-3"]),
    ("teacher:\n  mode: sometimes\n", ["valid: cached, online"]),
    ("data: [1, 2]\n", ["expected a mapping"]),
    ("run: [\n", ["not valid YAML"]),
    ("- 1\n- 2\n", ["must be a mapping"]),
])
def test_params_errors_name_file_key_and_valid_keys(tmp_path, yaml_text, expected):
    bad = tmp_path/"bad.yaml"; bad.write_text(yaml_text)
    with pytest.raises(PokecardError) as error:
        load_params(bad)
    for fragment in expected: assert fragment in str(error.value)

def test_int_is_accepted_for_float(tmp_path):
    (tmp_path/"p.yaml").write_text("distill:\n  lr: 1\n")
    assert load_params(tmp_path/"p.yaml").distill.lr == 1.0

def test_missing_params_file():
    with pytest.raises(PokecardError, match="not found"): load_params("/nonexistent/x.yaml")

def test_site_settings_file_and_env_overrides(tmp_path, monkeypatch):
    ini = tmp_path/"settings.ini"
    ini.write_text("[site]\ndata_root = ../cards\noutputs_root = out\ndevice = cpu\nthreads = 2\nhailo_arch = hailo8l\ncamera_index = 1\n")
    for key in ("DATA_ROOT", "OUTPUTS_ROOT", "DEVICE", "THREADS", "HAILO_ARCH", "CAMERA_INDEX"): monkeypatch.delenv(f"POKECARD_{key}", raising=False)
    site = site_settings(ini)
    assert site.data_root == (tmp_path/"../cards").resolve() and site.outputs_root == tmp_path/"out"
    assert (site.device, site.threads, site.hailo_arch, site.camera_index) == ("cpu", 2, "hailo8l", 1)
    monkeypatch.setenv("POKECARD_DATA_ROOT", str(tmp_path/"elsewhere"))
    monkeypatch.setenv("POKECARD_HAILO_ARCH", "hailo8")
    monkeypatch.setenv("POKECARD_CAMERA_INDEX", "3")
    site = site_settings(ini)
    assert site.data_root == tmp_path/"elsewhere" and site.hailo_arch == "hailo8" and site.camera_index == 3
    monkeypatch.setenv("POKECARD_THREADS", "many")
    with pytest.raises(PokecardError, match="threads='many'.*must be an integer"): site_settings(ini)
    monkeypatch.delenv("POKECARD_THREADS")
    ini.write_text("[site]\ngpu = 1\n")
    with pytest.raises(PokecardError, match="unknown key.*gpu.*valid: data_root"): site_settings(ini)

def test_atomic_write_survives_a_killed_process(tmp_path):
    "A process killed in the middle of a write leaves the previous file intact and no half-written target."
    target = tmp_path/"db"/"manifest.json"
    atomic_write_json(target, {"version": 1})
    script = textwrap.dedent(f"""
        import os
        from pokecard.core import atomic_write
        with atomic_write({str(target)!r}, "w") as f:
            f.write('{{"version": 2, "rows": [')
            f.flush()
            os._exit(9)  # power cut: no cleanup, no rename
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9
    assert json.loads(target.read_text()) == {"version": 1}
    atomic_write_json(target, {"version": 3})
    assert json.loads(target.read_text()) == {"version": 3}

def test_stage_registry_is_ordered_and_unique():
    stages = load_stages()
    names, sections = [s.name for s in stages], [s.section for s in stages]
    assert names == sorted(names) and len(set(names)) == len(names) == len(set(sections)) == 8
    assert all(s.builder.__name__ == f"build_{s.section}" for s in stages)
