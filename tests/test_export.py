"""pokecard.export: ONNX export, calibration files, INT8, latency, and the Hailo path up to the compiler call."""
import importlib.util, json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn, torch.nn.functional as F
from pokecard.core import PokecardError
from pokecard import export as ex

HAS_HAILO_SDK = importlib.util.find_spec("hailo_sdk_client") is not None


class TinyEmbedder(nn.Module):
    "Float NCHW RGB 0..255 in, L2-normalised embeddings out, normalisation inside."
    def __init__(self, dim=12):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                                      nn.Conv2d(8, 16, 3, stride=4, padding=1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, dim)

    def forward(self, x):
        return F.normalize(self.head(self.features((x.float() - self.mean) / self.std)), dim=-1)


class NoNormEmbedder(nn.Module):
    "No input normalisation and no L2 normalisation: Hailo parses it whole."
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3, stride=8), nn.Linear(4, 6)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def images(n, size=224, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.uint8)
    return np.ascontiguousarray(coarse.repeat(size // 8, 1).repeat(size // 8, 2))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyEmbedder().eval()
    folder = tmp_path_factory.mktemp("export")
    info = ex.export_onnx(model, folder / "tiny.onnx")
    return model, folder / "tiny.onnx", info


@pytest.fixture(scope="module")
def quantized(exported, tmp_path_factory):
    _, fp32_path, _ = exported
    out = tmp_path_factory.mktemp("int8") / "tiny_int8.onnx"
    return out, ex.quantize_int8(fp32_path, images(16, seed=1), out)


# --- export -------------------------------------------------------------------------------------------------

def test_export_contract(exported):
    model, path, info = exported
    assert (info["input_name"], info["input_shape"], info["input_dtype"]) == ("image", ["batch", 224, 224, 3], "uint8")
    assert (info["output_name"], info["output_shape"], info["output_dtype"]) == ("embedding", ["batch", 12], "float32")
    assert info["opset"] == 17 and info["bytes"] == path.stat().st_size
    assert not list(path.parent.glob(".*.tmp")), "atomic write left a temp file"
    assert model.training is False


@pytest.mark.parametrize("batch", [1, 3])
def test_export_dynamic_batch(exported, batch):
    _, path, _ = exported
    out = ex.onnx_embed(path, images(batch))
    assert out.shape == (batch, 12) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_export_restores_training_mode(tmp_path):
    model = TinyEmbedder().train()
    ex.export_onnx(model, tmp_path / "m.onnx")
    assert model.training


def test_export_other_input_size(tmp_path):
    info = ex.export_onnx(TinyEmbedder(), tmp_path / "m.onnx", input_size=96)
    assert info["input_shape"] == ["batch", 96, 96, 3]
    with pytest.raises(PokecardError, match="96x96"):
        ex.onnx_embed(tmp_path / "m.onnx", images(1))


def test_export_rejects_non_embedding_output(tmp_path):
    with pytest.raises(PokecardError, match=r"\(N,D\)"):
        ex.export_onnx(nn.Conv2d(3, 4, 3), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.parametrize("bad", [None, "model"])
def test_export_rejects_non_module(tmp_path, bad):
    with pytest.raises(PokecardError, match="nn.Module"):
        ex.export_onnx(bad, tmp_path / "bad.onnx")


def test_parity(exported):
    model, path, _ = exported
    parity = ex.onnx_parity(model, path, images(5))
    assert parity["onnx_max_abs_diff"] < 1e-4 and parity["mean_cosine"] > 0.99999 and parity["n"] == 5


# --- onnx_embed / cpu_session input checks -----------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (images(2).astype(np.float32), "uint8"),
    (images(2).transpose(0, 3, 1, 2).copy(), "NHWC"),
    (images(2)[0], "NHWC"),
    ([[1, 2, 3]], "uint8"),
    (images(2, size=112), "224x224"),
])
def test_onnx_embed_rejects_bad_images(exported, bad, message):
    with pytest.raises(PokecardError, match=message):
        ex.onnx_embed(exported[1], bad)


def test_onnx_embed_accepts_a_session_and_empty_input(exported):
    session = ex.cpu_session(exported[1], threads=1)
    assert ex.onnx_embed(session, images(0)).shape == (0, 12)
    np.testing.assert_allclose(ex.onnx_embed(session, images(4), batch_size=3), ex.onnx_embed(exported[1], images(4)), atol=1e-6)


def test_cpu_session_missing_file(tmp_path):
    with pytest.raises(PokecardError, match="not found"):
        ex.cpu_session(tmp_path / "nope.onnx")


# --- calibration selection and files -----------------------------------------------------------------------

def catalog(n=900, sets=30, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(dict(card_id=[f"set{i % sets}-{i}" for i in range(n)], set_id=[f"set{i % sets}" for i in range(n)],
                             supertype=rng.choice(["Pokémon", "Trainer", "Energy"], n, p=[0.7, 0.25, 0.05]),
                             rarity=pd.Series(rng.choice(["Common", "Uncommon", "Rare", "Rare Holo", "-"], n, p=[0.45, 0.3, 0.15, 0.07, 0.03]))
                                    .replace("-", None)))  # some cards have no rarity


def test_select_calibration_covers_and_is_proportional():
    cards = catalog()
    picked = ex.select_calibration(cards, 120, seed=3)
    assert len(picked) == len(set(picked)) == 120
    chosen = cards.set_index("card_id").loc[picked]
    assert chosen.set_id.nunique() == 30 and chosen.set_id.value_counts().max() == 4
    assert set(chosen.supertype) == {"Pokémon", "Trainer", "Energy"}
    assert set(chosen.rarity.fillna("none")) == {"Common", "Uncommon", "Rare", "Rare Holo", "none"}
    share = (chosen.supertype == "Pokémon").mean()
    assert abs(share - (cards.supertype == "Pokémon").mean()) < 0.08


def test_select_calibration_small_n_covers_sets_first():
    picked = ex.select_calibration(catalog(), 30)
    assert len({c.split("-")[0] for c in picked}) == 30


def test_select_calibration_seeded_and_all_when_fewer():
    cards = catalog()
    assert ex.select_calibration(cards, 50, seed=0) == ex.select_calibration(cards, 50, seed=0)
    assert ex.select_calibration(cards, 50, seed=0) != ex.select_calibration(cards, 50, seed=1)
    assert ex.select_calibration(cards, 900) == cards.card_id.tolist()
    doubled = pd.concat([cards.head(5), cards.head(5)])
    assert ex.select_calibration(doubled, 100) == cards.card_id.head(5).tolist()


@pytest.mark.parametrize("n", [0, -3])
def test_select_calibration_bad_n(n):
    with pytest.raises(PokecardError, match="at least one"):
        ex.select_calibration(catalog(), n)


def test_select_calibration_missing_column():
    with pytest.raises(PokecardError, match="supertype"):
        ex.select_calibration(catalog().drop(columns="supertype"), 5)


def test_save_and_load_calibration(tmp_path):
    ids = [f"xy12-{i}" for i in range(6)]
    paths = ex.save_calibration(images(6), ids, tmp_path / "calib")
    assert {Path(p).name for p in paths.values()} == {"calib.npy", "calib.txt", "calib.json"}
    array = np.load(paths["npy"])
    assert array.dtype == np.uint8 and array.shape == (6, 224, 224, 3)
    np.testing.assert_array_equal(array, images(6))
    assert Path(paths["txt"]).read_text().splitlines() == ids
    meta = json.loads(Path(paths["json"]).read_text())
    assert meta["card_ids"] == ids and meta["shape"] == [6, 224, 224, 3] and meta["dtype"] == "uint8"
    assert ex.load_calibration(tmp_path / "calib").shape == (6, 224, 224, 3)
    assert ex.load_calibration(paths["npy"], size=224).shape == (6, 224, 224, 3)
    assert not list((tmp_path / "calib").glob(".*"))


@pytest.mark.parametrize("bad_images, ids, message", [
    (images(3), ["a", "b"], "card ids"),
    (images(0), [], "card ids"),
    (images(2).astype(np.float32), ["a", "b"], "uint8"),
    (images(2)[..., :1], ["a", "b"], "NHWC"),
    (images(2), ["a", "../b"], "card id"),
])
def test_save_calibration_rejects(tmp_path, bad_images, ids, message):
    with pytest.raises(PokecardError, match=message):
        ex.save_calibration(bad_images, ids, tmp_path)
    assert not (tmp_path / "calib.npy").exists()


def test_load_calibration_rejects(tmp_path):
    with pytest.raises(PokecardError, match="not found"):
        ex.load_calibration(tmp_path / "none.npy")
    np.save(tmp_path / "float.npy", images(2).astype(np.float32))
    with pytest.raises(PokecardError, match="uint8"):
        ex.load_calibration(tmp_path / "float.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(PokecardError, match="not a .npy"):
        ex.load_calibration(tmp_path / "junk.npy")
    np.save(tmp_path / "empty.npy", images(0))
    with pytest.raises(PokecardError, match="no images"):
        ex.load_calibration(tmp_path / "empty.npy")


def test_calibration_reader_batches():
    reader = ex.UInt8CalibrationReader(images(5), "image", batch_size=2)
    assert len(reader) == 3
    batches = [b["image"].shape[0] for b in iter(reader.get_next, None)]
    assert batches == [2, 2, 1] and reader.get_next() is None
    reader.rewind()
    assert reader.get_next()["image"].dtype == np.uint8
    from onnxruntime.quantization import CalibrationDataReader
    assert isinstance(reader, CalibrationDataReader)


# --- INT8 ----------------------------------------------------------------------------------------------------

def test_quantize_int8(exported, quantized):
    _, fp32_path, _ = exported
    out, info = quantized
    assert out.is_file() and info["int8_bytes"] == out.stat().st_size and info["fp32_bytes"] == fp32_path.stat().st_size
    assert (info["calibrate_method"], info["activation_type"], info["weight_type"], info["quant_format"]) == ("minmax", "uint8", "int8", "QDQ")
    assert ex.onnx_io_info(out)["input_shape"] == ["batch", 224, 224, 3]
    assert not list(out.parent.glob(".quantize-*")), "temp folder left behind"
    assert ex.onnx_embed(out, images(3)).shape == (3, 12)


def test_embedding_agreement(exported, quantized):
    agreement = ex.embedding_agreement(exported[1], quantized[0], images(8, seed=7))
    assert agreement["n"] == 8 and 0.9 < agreement["mean_cosine"] <= 1.0001 and agreement["min_cosine"] <= agreement["mean_cosine"]
    assert 0 <= agreement["self_top1"] <= 1


def test_measurements_need_images(exported, quantized):
    with pytest.raises(PokecardError, match="at least one image"):
        ex.onnx_parity(exported[0], exported[1], images(0))
    with pytest.raises(PokecardError, match="at least one image"):
        ex.embedding_agreement(exported[1], quantized[0], images(0))


def test_quantize_int8_rejects(exported, tmp_path):
    fp32_path = exported[1]
    with pytest.raises(PokecardError, match="not found"):
        ex.quantize_int8(tmp_path / "none.onnx", images(2), tmp_path / "q.onnx")
    with pytest.raises(PokecardError, match="minmax"):
        ex.quantize_int8(fp32_path, images(2), tmp_path / "q.onnx", calibrate_method="kl")
    with pytest.raises(PokecardError, match="uint8"):
        ex.quantize_int8(fp32_path, images(2).astype(np.float32), tmp_path / "q.onnx")
    with pytest.raises(PokecardError, match="224x224"):
        ex.quantize_int8(fp32_path, images(2, size=64), tmp_path / "q.onnx")
    with pytest.raises(PokecardError, match="no images"):
        ex.quantize_int8(fp32_path, images(0), tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_latency_table(exported, quantized):
    table = ex.latency_table({"fp32": exported[1], "int8": quantized[0]}, n=3, threads=1, warmup=1)
    assert list(table.index) == ["fp32", "int8"]
    assert {"p50_ms", "p95_ms", "mean_ms", "megabytes", "threads", "runs"} <= set(table.columns)
    assert (table.p95_ms >= table.p50_ms).all() and (table.runs == 3).all()


# --- Hailo: everything up to the compiler -------------------------------------------------------------------

def test_hailo_graph_plan(exported):
    model, path, _ = exported
    plan = ex.hailo_graph_plan(path)
    assert plan["start_node"].endswith("Conv") and plan["end_node"].endswith("Gemm")
    assert plan["net_input_shape"] == [1, 3, 224, 224] and plan["l2_normalise_on_host"] and plan["embedding_dim"] == 12
    np.testing.assert_allclose(plan["normalization"]["mean"], model.mean.flatten().numpy(), rtol=1e-5)
    np.testing.assert_allclose(plan["normalization"]["std"], model.std.flatten().numpy(), rtol=1e-5)
    script = ex.hailo_model_script(plan, 16, "model_optimization_flavor(optimization_level=1)\n")
    assert script.splitlines() == ["normalization1 = normalization([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])",
                                   "model_optimization_config(calibration, batch_size=8, calibset_size=16)",
                                   "model_optimization_flavor(optimization_level=1)"]


def test_hailo_graph_plan_composes_affine_chain(tmp_path):
    class Scaled(TinyEmbedder):  # x/255 then (x - m)/s: one affine map, the same normalisation
        def forward(self, x):
            x = x.float() / 255.0
            return F.normalize(self.head(self.features((x - self.mean / 255) / (self.std / 255))), dim=-1)
    model = Scaled()
    ex.export_onnx(model, tmp_path / "scaled.onnx")
    plan = ex.hailo_graph_plan(tmp_path / "scaled.onnx")
    np.testing.assert_allclose(plan["normalization"]["mean"], model.mean.flatten().numpy(), rtol=1e-4)
    np.testing.assert_allclose(plan["normalization"]["std"], model.std.flatten().numpy(), rtol=1e-4)


def test_hailo_graph_plan_without_normalisations(tmp_path):
    ex.export_onnx(NoNormEmbedder(), tmp_path / "plain.onnx", input_size=64)
    plan = ex.hailo_graph_plan(tmp_path / "plain.onnx")
    assert plan["normalization"] is None and not plan["l2_normalise_on_host"]
    assert plan["start_node"].endswith("Conv") and plan["net_input_shape"] == [1, 3, 64, 64]
    assert "normalization" not in ex.hailo_model_script(plan, 4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_hailo_graph_plan_rejects_foreign_graph(tmp_path):
    model = TinyEmbedder().eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(tmp_path / "nchw.onnx"), dynamo=False, input_names=["x"])
    with pytest.raises(PokecardError, match="export_onnx"):
        ex.hailo_graph_plan(tmp_path / "nchw.onnx")


@pytest.fixture
def calib_dir(tmp_path):
    ex.save_calibration(images(4), [f"c-{i}" for i in range(4)], tmp_path / "calib")
    return tmp_path / "calib"


@pytest.mark.parametrize("arch", ["hailo10h", "Hailo8", "", None])
def test_compile_hailo_bad_arch(exported, calib_dir, arch):
    with pytest.raises(PokecardError, match="hailo8, hailo8l"):
        ex.compile_hailo(exported[1], calib_dir, arch=arch)


def test_compile_hailo_missing_onnx(tmp_path, calib_dir):
    with pytest.raises(PokecardError, match="not found"):
        ex.compile_hailo(tmp_path / "missing.onnx", calib_dir)


@pytest.mark.parametrize("bad, message", [
    (images(2).transpose(0, 3, 1, 2).copy(), "NHWC"),
    (images(2).astype(np.float32), "uint8"),
    (images(2).astype(np.float32) / 255, "uint8"),
    (images(2, size=128), "224x224"),
    (images(0), "no images"),
])
def test_compile_hailo_bad_calibration_array(exported, tmp_path, bad, message):
    with pytest.raises(PokecardError, match=message):
        ex.compile_hailo(exported[1], bad)
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(PokecardError, match=message):
        ex.compile_hailo(exported[1], tmp_path / "bad.npy")


def test_compile_hailo_missing_calibration(exported, tmp_path):
    with pytest.raises(PokecardError, match="not found"):
        ex.compile_hailo(exported[1], tmp_path / "nope.npy")


@pytest.mark.skipif(HAS_HAILO_SDK, reason="the Hailo DFC is installed here")
def test_compile_hailo_without_sdk_says_how_to_install(exported, calib_dir, tmp_path):
    with pytest.raises(PokecardError) as error:
        ex.compile_hailo(exported[1], calib_dir, arch="hailo8l", out_dir=tmp_path / "hef")
    message = str(error.value)
    for words in ("hailo_sdk_client", "Developer Zone", "not on PyPI", "x86-64 Linux", "pip install"):
        assert words in message
    assert not (tmp_path / "hef").exists()


@pytest.mark.skipif(HAS_HAILO_SDK, reason="the Hailo DFC is installed here")
def test_compile_hailo_main_without_sdk(exported, calib_dir):
    with pytest.raises(PokecardError, match="Developer Zone"):
        ex.compile_hailo_main(["--onnx", str(exported[1]), "--calib", str(calib_dir / "calib.npy"), "--arch", "hailo8"])


def test_compile_hailo_main_arguments(exported, calib_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        ex.compile_hailo_main(["--onnx", str(exported[1]), "--calib", str(calib_dir), "--arch", "hailo9"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ex.compile_hailo_main(["--calib", str(calib_dir)])
    with pytest.raises(PokecardError, match="model script"):
        ex.compile_hailo_main(["--onnx", str(exported[1]), "--calib", str(calib_dir), "--model-script", str(tmp_path / "none.alls")])


def test_modules_for_the_pi_do_not_need_torch():
    "pokecard.export imports torch, onnx and pandas only inside the functions that use them."
    import subprocess, sys
    code = "import sys, pokecard.export; print(any(m in sys.modules for m in ('torch', 'onnx', 'pandas')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# --- the embedder contract: one line naming the file and the interface, never a traceback ----------------------------

def graph_model(path, input_type, input_shape, output_type="FLOAT", output_shape=("batch", 3), ops="nhwc", flatten=True):
    "A tiny ONNX model with the given input/output declarations (GlobalAveragePool over the image)."
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    elem = lambda name: getattr(TensorProto, name)
    if ops == "nhwc":
        nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
                 helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2])]
    else:
        nodes = [helper.make_node("Cast", ["image"], ["nchw"], to=TensorProto.FLOAT)]
    nodes += [helper.make_node("GlobalAveragePool", ["nchw"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
              helper.make_node("Cast", ["flat" if flatten else "pooled"], ["embedding"], to=elem(output_type))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", elem(input_type), list(input_shape))],
                              [helper.make_tensor_value_info("embedding", elem(output_type), list(output_shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def assert_one_line_model_error(call, path, *fragments):
    with pytest.raises(PokecardError) as error: call()
    message = str(error.value)
    assert "\n" not in message and str(path) in message and ex.EMBEDDER_INTERFACE in message, message
    assert ex.EMBEDDER_INTERFACE == "uint8 (N, S, S, 3) RGB image -> (N, D) float embedding"
    for fragment in fragments: assert fragment in message, message
    return message


def test_embedder_interface_of_an_exported_model(exported, quantized):
    expected = dict(input_name="image", output_name="embedding", size=224, dim=12, batch=None, output_dtype="float32")
    assert ex.embedder_interface(exported[1]) == expected
    assert ex.embedder_interface(quantized[0]) == expected
    assert ex.embedder_interface(str(exported[1]), session=ex.cpu_session(exported[1])) == expected


def test_embedder_interface_fixed_batch_and_symbolic_size(tmp_path):
    fixed = graph_model(tmp_path / "fixed.onnx", "UINT8", (1, 64, 64, 3), output_shape=(1, 3))
    assert ex.embedder_interface(fixed) == dict(input_name="image", output_name="embedding", size=64, dim=3, batch=1, output_dtype="float32")
    symbolic = graph_model(tmp_path / "any.onnx", "UINT8", ("batch", "height", "width", 3), output_shape=("batch", "dim"))
    info = ex.embedder_interface(symbolic)
    assert (info["size"], info["batch"]) == (None, None) and info["dim"] in (3, None)  # ONNX Runtime may infer D itself
    half = graph_model(tmp_path / "half.onnx", "UINT8", ("batch", 32, 32, 3), output_type="FLOAT16")
    assert ex.embedder_interface(half)["output_dtype"] == "float16"


@pytest.mark.parametrize("name, content, fragment", [
    ("card.onnx", "png", "is not an ONNX model"),
    ("notes.onnx", b"this is a text file, renamed\n", "is not an ONNX model"),
    ("empty.onnx", b"", "is not an ONNX model"),
    ("random.onnx", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "is not an ONNX model"),
])
def test_non_onnx_files_are_refused_in_one_line(tmp_path, name, content, fragment):
    "A PNG or a text file renamed .onnx: embedder_interface, cpu_session and onnx_io_info all give the one-line error (old code: tracebacks)."
    path = tmp_path / name
    if content == "png":
        from PIL import Image
        Image.new("RGB", (64, 88), (200, 30, 30)).save(path, format="PNG")
    else: path.write_bytes(content)
    assert_one_line_model_error(lambda: ex.embedder_interface(path), path, fragment)
    assert_one_line_model_error(lambda: ex.cpu_session(path), path, fragment)
    assert_one_line_model_error(lambda: ex.onnx_io_info(path), path, fragment)


def test_missing_model_and_folder_are_refused_in_one_line(tmp_path):
    for call in (ex.embedder_interface, ex.cpu_session, ex.onnx_io_info):
        assert_one_line_model_error(lambda: call(tmp_path / "absent.onnx"), tmp_path / "absent.onnx", "not found")
        assert_one_line_model_error(lambda: call(tmp_path), tmp_path, "is not a file")


@pytest.mark.parametrize("input_type, input_shape, ops, fragment", [
    ("FLOAT", ("batch", 3, 224, 224), "nchw", "takes float32 (batch, 3, 224, 224) 'image'"),  # a plain torch export: float NCHW
    ("FLOAT", ("batch", 224, 224, 3), "nhwc", "takes float32 (batch, 224, 224, 3) 'image'"),  # NHWC but float
    ("UINT8", ("batch", 3, 224, 224), "nchw", "takes uint8 (batch, 3, 224, 224) 'image'"),    # uint8 but NCHW
    ("UINT8", ("batch", 224, 160, 3), "nhwc", "takes uint8 (batch, 224, 160, 3) 'image'"),    # not square
    ("UINT8", ("batch", 224, 224, 4), "nhwc", "takes uint8 (batch, 224, 224, 4) 'image'"),    # RGBA
])
def test_wrong_input_interface_is_refused(tmp_path, input_type, input_shape, ops, fragment):
    path = graph_model(tmp_path / "wrong.onnx", input_type, input_shape, ops=ops)
    assert_one_line_model_error(lambda: ex.embedder_interface(path), path, fragment)


def test_wrong_output_interface_is_refused(tmp_path):
    path = graph_model(tmp_path / "ints.onnx", "UINT8", ("batch", 64, 64, 3), output_type="INT64")
    assert_one_line_model_error(lambda: ex.embedder_interface(path), path, "gives int64 (batch, 3) 'embedding'")
    path = graph_model(tmp_path / "rank4.onnx", "UINT8", ("batch", 64, 64, 3), output_shape=("batch", 3, 1, 1), flatten=False)
    assert_one_line_model_error(lambda: ex.embedder_interface(path), path, "gives float32 (batch, 3, 1, 1) 'embedding'")


def test_a_real_torch_nchw_export_is_refused(tmp_path):
    "What a user gets from a plain torch.onnx.export of the student: float32 NCHW."
    import warnings
    path = tmp_path / "plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(TinyEmbedder().eval(), (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, input_names=["input"], output_names=["embedding"])
    assert_one_line_model_error(lambda: ex.embedder_interface(path), path, "takes float32 (1, 3, 224, 224) 'input'")


def test_embedder_interface_needs_neither_onnx_nor_torch_nor_pandas(exported, tmp_path):
    "The Pi install: onnx, torch and pandas unimportable; embedder_interface still reads the interface and refuses a bad file."
    import subprocess, sys
    (tmp_path / "bad.onnx").write_text("not a model")
    code = ("import sys\nfor m in ('onnx', 'torch', 'pandas', 'timm', 'transformers'): sys.modules[m] = None\n"
            "from pokecard.export import embedder_interface\nfrom pokecard.core import PokecardError\n"
            f"print(embedder_interface({str(exported[1])!r})['size'])\n"
            f"try: embedder_interface({str(tmp_path / 'bad.onnx')!r})\nexcept PokecardError as e: print('refused', 'is not an ONNX model' in str(e))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["224", "refused", "True"]
