"Params files that must be refused with the file and the key named: extends cycles and non-strings, bad keys in a parent, out-of-range values, run names outside the outputs root."
import dataclasses
from pathlib import Path
import pytest
from pokecard.core import PokecardError
from pokecard.params import PARAM_CHECKS, PHOTO_PRESET_NAMES, STAGE_PARAMS, Experiment, Items, Range, RunName, experiment_from_dict, load_params
from pokecard.stages import run_dir


def refusal(path: Path) -> str:
    with pytest.raises(PokecardError) as error: load_params(path)
    message = str(error.value)
    assert "\n" not in message.strip() or "YAML" in message
    return message


# --- extends ------------------------------------------------------------------------------------------

def test_extends_cycle_of_two_files_is_refused(tmp_path):
    (tmp_path/"a.yaml").write_text("extends: b.yaml\nrun: a\n")
    (tmp_path/"b.yaml").write_text("extends: a.yaml\nseed: 1\n")
    message = refusal(tmp_path/"a.yaml")
    assert "parameter 'extends'" in message and "cycle" in message
    assert f"{tmp_path/'a.yaml'} -> {tmp_path/'b.yaml'} -> {tmp_path/'a.yaml'}" in message


def test_file_extending_itself_is_refused(tmp_path):
    (tmp_path/"self.yaml").write_text("extends: self.yaml\n")
    message = refusal(tmp_path/"self.yaml")
    assert "cycle" in message and str(tmp_path/"self.yaml") in message


def test_longer_cycle_through_a_subfolder_is_refused(tmp_path):
    (tmp_path/"sub").mkdir()
    (tmp_path/"a.yaml").write_text("extends: sub/b.yaml\n")
    (tmp_path/"sub"/"b.yaml").write_text("extends: ../c.yaml\n")
    (tmp_path/"c.yaml").write_text("extends: ./a.yaml\n")
    assert "cycle" in refusal(tmp_path/"a.yaml")


def test_a_diamond_is_not_a_cycle(tmp_path):
    (tmp_path/"base.yaml").write_text("distill:\n  epochs: 3\n")
    (tmp_path/"mid.yaml").write_text("extends: base.yaml\ndistill:\n  lr: 2.0e-4\n")
    (tmp_path/"top.yaml").write_text("extends: mid.yaml\nrun: top\n")
    experiment = load_params(tmp_path/"top.yaml")
    assert (experiment.run, experiment.distill.epochs, experiment.distill.lr) == ("top", 3, 2.0e-4)


@pytest.mark.parametrize("value", ["[quick.yaml]", "3", "{file: quick.yaml}", "true", "''", "null"])
def test_non_string_extends_is_refused(tmp_path, value):
    (tmp_path/"p.yaml").write_text(f"extends: {value}\nrun: p\n")
    message = refusal(tmp_path/"p.yaml")
    assert "parameter 'extends' in" in message and str(tmp_path/"p.yaml") in message and "must name one other params file" in message


def test_missing_parent_names_the_child(tmp_path):
    (tmp_path/"child.yaml").write_text("extends: nowhere.yaml\n")
    message = refusal(tmp_path/"child.yaml")
    assert "nowhere.yaml" in message and "not found" in message and "extended by" in message and "child.yaml" in message


@pytest.mark.parametrize("parent_text, fragments", [
    ("distill:\n  learnin_rate: 0.1\n", ["unknown parameter 'learnin_rate'", "base.yaml [distill]", "valid: backbone, embed_dim"]),
    ("trainer:\n  epochs: 1\n", ["unknown parameter 'trainer'", "base.yaml", "valid: run, seed, extends, data"]),
    ("distill:\n  epochs: two\n", ["parameter 'epochs'", "base.yaml [distill]", "must be int"]),
    ("distill:\n  epochs: -2\n", ["parameter 'epochs'", "base.yaml [distill]", "must be >= 1"]),
    ("run: ../escape\n", ["parameter 'run'", "base.yaml", "one folder name"]),
])
def test_bad_key_in_the_extended_parent_names_the_parent(tmp_path, parent_text, fragments):
    (tmp_path/"base.yaml").write_text(parent_text)
    (tmp_path/"child.yaml").write_text("extends: base.yaml\nrun: child\ndistill:\n  epochs: 2\n")
    message = refusal(tmp_path/"child.yaml")
    for fragment in fragments: assert fragment in message
    assert str(tmp_path/"base.yaml") in message and f"extended by {tmp_path/'child.yaml'}" in message


def test_the_child_may_override_what_the_parent_leaves_valid(tmp_path):
    (tmp_path/"base.yaml").write_text("run: base\ndistill:\n  epochs: 3\n")
    (tmp_path/"child.yaml").write_text("extends: base.yaml\nrun: child\ndistill:\n  epochs: 5\n")
    assert load_params(tmp_path/"child.yaml").distill.epochs == 5


# --- ranges ---------------------------------------------------------------------------------------------

OUT_OF_RANGE = [
    ("seed", None, "-1", ">= 0"),
    ("data", "n_cards", "0", ">= 1"), ("data", "n_sets", "-3", ">= 1"), ("data", "reprint_fraction", "1.5", "in [0, 1]"),
    ("data", "reprint_fraction", "-0.1", "in [0, 1]"), ("data", "n_heldout_sets", "-1", ">= 0"),
    ("data", "queries_per_card", "0", ">= 1"), ("data", "image_size", "0", "in [32, 1024]"),
    ("data", "image_size", "-224", "in [32, 1024]"), ("data", "image_size", "100000", "in [32, 1024]"),
    ("data", "query_seed", "-5", ">= 0"), ("data", "heldout_sets", "[xy12, 7]", "item 1 (7) must be str"),
    ("teacher", "views_per_card", "0", ">= 1"), ("teacher", "batch_size", "-32", ">= 1"), ("teacher", "project_dim", "-1", ">= 0"),
    ("teacher", "compare", "[1]", "must be str"),
    ("distill", "epochs", "-1", ">= 1"), ("distill", "epochs", "0", ">= 1"), ("distill", "batch_size", "0", ">= 1"),
    ("distill", "lr", "0.0", "> 0"), ("distill", "lr", "-1.0e-3", "> 0"), ("distill", "lr", ".inf", "finite"),
    ("distill", "lr", ".nan", "finite"), ("distill", "weight_decay", "-0.01", ">= 0"), ("distill", "warmup_epochs", "-1.0", ">= 0"),
    ("distill", "alpha", "1.01", "in [0, 1]"), ("distill", "temperature", "0", "> 0"), ("distill", "temperature", "-4.0", "> 0"),
    ("distill", "grad_clip", "-1.0", ">= 0"), ("distill", "num_workers", "-2", ">= 0"), ("distill", "max_steps", "-6", ">= 0"),
    ("distill", "freeze_blocks", "-1", ">= 0"), ("distill", "embed_dim", "-768", ">= 0"),
    ("hardneg", "epochs", "-1", ">= 1"), ("hardneg", "lr", "0", "> 0"), ("hardneg", "margin", "-0.2", "in [0, 2]"),
    ("hardneg", "margin", "3.0", "in [0, 2]"), ("hardneg", "positives", "0", ">= 1"), ("hardneg", "negatives", "0", ">= 1"),
    ("hardneg", "anchors_per_batch", "0", ">= 1"), ("hardneg", "distill_weight", "-0.1", ">= 0"),
    ("hardneg", "max_steps", "-1", ">= 0"),
    ("quantize", "calib_size", "0", ">= 1"), ("quantize", "opset", "7", ">= 13"),
    ("index", "scale_tests", "[17592, -1]", "item 1 (-1) must be >= 1"),
    ("analysis", "umap_neighbors", "1", ">= 2"), ("analysis", "max_points", "0", ">= 1"), ("analysis", "kmeans_clusters", "0", ">= 1"),
    ("pi", "scene_photos", "-4", ">= 1"), ("pi", "verify_photos", "0", ">= 1"),
    ("pi", "verify_presets", "[hard, stormy]", "item 1 ('stormy') must be one of clean, easy, medium, hard"),
]


@pytest.mark.parametrize("section, key, value, expected", OUT_OF_RANGE, ids=[f"{s}.{k}={v}" for s, k, v, _ in OUT_OF_RANGE])
def test_out_of_range_values_are_refused_with_file_key_and_range(tmp_path, section, key, value, expected):
    text = f"{section}: {value}\n" if key is None else f"{section}:\n  {key}: {value}\n"
    (tmp_path/"p.yaml").write_text(text)
    message = refusal(tmp_path/"p.yaml")
    name = section if key is None else key
    where = str(tmp_path/"p.yaml") + ("" if key is None else f" [{section}]")
    assert f"parameter {name!r} in {where} is " in message and expected in message


REMOVED = [("hardneg", "refresh_steps", "0"), ("pi", "top_k", "5")]  # settings nothing read (issue 20): a file still setting them is refused


@pytest.mark.parametrize("section, key, value", REMOVED, ids=[f"{s}.{k}" for s, k, _ in REMOVED])
def test_removed_settings_are_unknown_keys(tmp_path, section, key, value):
    (tmp_path/"p.yaml").write_text(f"run: p\n{section}:\n  {key}: {value}\n")
    message = refusal(tmp_path/"p.yaml")
    assert f"unknown parameter {key!r} in {tmp_path/'p.yaml'} [{section}]; valid: " in message
    assert not hasattr(getattr(experiment_from_dict({}), section), key)


IN_RANGE = [("data", "n_heldout_sets", 0), ("data", "reprint_fraction", 0.0), ("data", "reprint_fraction", 1), ("distill", "alpha", 1.0),
            ("distill", "max_steps", 0), ("distill", "grad_clip", 0.0), ("distill", "embed_dim", 0), ("hardneg", "margin", 0.0),
            ("data", "image_size", 32), ("data", "image_size", 1024), ("distill", "lr", 1.0e-6), ("pi", "verify_presets", []),
            ("pi", "verify_presets", ["clean", "easy", "medium", "hard"]), ("index", "scale_tests", [1, 100000])]


@pytest.mark.parametrize("section, key, value", IN_RANGE)
def test_boundary_values_are_accepted(section, key, value):
    experiment = experiment_from_dict({section: {key: value}})
    assert getattr(getattr(experiment, section), key) == value


def test_injected_parameters_are_range_checked_too():
    "papermill injects a plain dict: the same checks, with the source named."
    with pytest.raises(PokecardError, match=r"parameter 'epochs' in notebook parameters \[hardneg\] is -1: must be >= 1"):
        experiment_from_dict({"hardneg": {"epochs": -1}}, source="notebook parameters")


def test_every_numeric_and_list_field_has_a_range():
    "A new int/float/list parameter must say which values it takes (PARAM_CHECKS), so a range can never be forgotten."
    for cls in (Experiment, *STAGE_PARAMS.values()):
        for f in dataclasses.fields(cls):
            if f.type in ("int", "float", "list", int, float, list):
                assert f.name in PARAM_CHECKS.get(cls, {}), f"{cls.__name__}.{f.name} has no entry in pokecard.params.PARAM_CHECKS"
        assert set(PARAM_CHECKS.get(cls, {})) <= {f.name for f in dataclasses.fields(cls)}, f"{cls.__name__}: PARAM_CHECKS names a field it lacks"


def test_every_default_is_in_range():
    for cls in (Experiment, *STAGE_PARAMS.values()):
        default = cls()
        for name, check in PARAM_CHECKS.get(cls, {}).items():
            assert check.problem(getattr(default, name)) is None, f"{cls.__name__}.{name} default {getattr(default, name)!r}"


def test_photo_preset_names_match_the_simulator():
    from pokecard.photos import PHOTO_PRESETS
    assert set(PHOTO_PRESET_NAMES) == set(PHOTO_PRESETS)


def test_range_text():
    assert [str(r) for r in (Range(0), Range(1), Range(0, low_open=True), Range(0, 1), Range(0, 2, low_open=True), Range(high=5))] == \
           [">= 0", ">= 1", "> 0", "in [0, 1]", "in (0, 2]", "<= 5"]
    assert Items(int, range=Range(1)).problem([1, True]) == "item 1 (True) must be int"


# --- run names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", ["../x", "/abs", "a/b", "''", ".", "..", "'..'", "a\\b", ".hidden", "a..b", "'x y'", "'~'", "'~/x'", "'-x'", "x" * 65])
def test_run_names_that_leave_the_outputs_root_are_refused(tmp_path, run):
    (tmp_path/"p.yaml").write_text(f"run: {run}\n")
    message = refusal(tmp_path/"p.yaml")
    assert f"parameter 'run' in {tmp_path/'p.yaml'} is " in message and "one folder name under the outputs root" in message


@pytest.mark.parametrize("run", ["ci", "quick", "real", "full", "real-2", "v1.2_b", "A", "x" * 64])
def test_plain_run_names_are_accepted(tmp_path, run):
    (tmp_path/"p.yaml").write_text(f"run: {run}\n")
    assert load_params(tmp_path/"p.yaml").run == run


@pytest.mark.parametrize("run", ["../x", "/abs", "a/b", "", ".", ".."])
def test_run_dir_refuses_a_run_made_in_python(run, monkeypatch, tmp_path):
    monkeypatch.setenv("POKECARD_OUTPUTS_ROOT", str(tmp_path/"outputs"))
    with pytest.raises(PokecardError, match="one folder name under the outputs root"): run_dir(Experiment(run=run))
    assert not (tmp_path/"x").exists() and not (tmp_path/"outputs").exists()
    assert run_dir(Experiment(run="ok")) == tmp_path/"outputs"/"ok"


def test_run_name_rule_is_one_line():
    assert "\n" not in RunName.rule and RunName().problem("quick") is None
