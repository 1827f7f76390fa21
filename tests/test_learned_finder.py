"The learned finder's Pi side without torch: a hand-built ONNX 'network' whose maps are the frame's own colour channels."
import numpy as np, cv2, pytest
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper
from pokecard.core import PokecardError
from pokecard.learned_finder import BODY_SHRINK, CORE_SHRINK, FINDER_INPUT, LearnedFinder, cards_from_maps, refine_sides

def _model(path, outputs=1):
    "uint8 (1, 192, 256, 3) -> maps (1, 3, 48, 64): each channel averaged over 4×4 pixels, /255 (R = body, G = core, B = top)."
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, FINDER_INPUT[1], FINDER_INPUT[0], 3])
    names = ["maps"] + [f"extra{i}" for i in range(1, outputs)]
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT), helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
             helper.make_node("Mul", ["pooled", "scale"], ["maps"])] + [helper.make_node("Identity", ["maps"], [n]) for n in names[1:]]
    graph = helper.make_graph(nodes, "fake_finder", [image], [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 48, 64]) for n in names],
                              [helper.make_tensor("scale", TensorProto.FLOAT, [], [1/255])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path

def _painted_frame(cards):
    "A 640×480 frame whose R, G, B channels are the body, core and top maps of `cards` (corners TL, TR, BR, BL as printed, frame px)."
    frame = np.zeros((480, 640, 3), np.uint8)
    for quad in cards:
        centre = quad.mean(0)
        for channel, polygon in ((0, centre + (quad - centre)*BODY_SHRINK), (1, centre + (quad - centre)*CORE_SHRINK),
                                 (2, np.array([quad[0], quad[1], (quad[1] + quad[2])/2, (quad[0] + quad[3])/2]))):
            layer = np.ascontiguousarray(frame[..., channel])
            cv2.fillPoly(layer, [np.round(polygon*16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
            frame[..., channel] = layer
    return frame

UPRIGHT = np.array([[100, 80], [250, 90], [240, 300], [90, 290]], np.float64)
UPSIDE_DOWN = np.array([[560, 400], [420, 400], [420, 205], [560, 205]], np.float64)  # printed TL at the bottom right

def test_find_cards_and_orientation(tmp_path):
    finder = LearnedFinder(_model(tmp_path/"fake.onnx"), threads=1)
    cards = finder.find(_painted_frame([UPRIGHT, UPSIDE_DOWN]), refine=False)
    assert len(cards) == 2 and all(c.oriented and not c.full_frame for c in cards)
    for truth in (UPRIGHT, UPSIDE_DOWN):
        best = min(cards, key=lambda c: np.abs(c.corners - truth).max())
        assert np.abs(best.corners - truth).max() < 6, (best.corners, truth)  # printed TL first, within ~half a map pixel (10 frame px)
    assert finder.find(np.zeros((480, 640, 3), np.uint8)) == []  # nothing found: no whole-frame fallback
    assert len(finder.find(_painted_frame([UPRIGHT]), max_cards=1)) == 1

def test_rejects_other_models(tmp_path):
    with pytest.raises(PokecardError, match="not found"): LearnedFinder(tmp_path/"missing.onnx")
    with pytest.raises(PokecardError, match="one output"): LearnedFinder(_model(tmp_path/"two.onnx", outputs=2))
    (tmp_path/"junk.onnx").write_bytes(b"not a model")
    with pytest.raises(PokecardError, match="not an ONNX"): LearnedFinder(tmp_path/"junk.onnx")

def test_maps_to_cards_touching():
    "Two cards 2 input px apart (a binder page) come out as two cards."
    fine = np.zeros((3, 192, 256), np.uint8)
    quads = [np.array([[20, 30], [100, 30], [100, 142], [20, 142]], np.float64), np.array([[102, 30], [182, 30], [182, 142], [102, 142]], np.float64)]
    for quad in quads:
        centre = quad.mean(0)
        for channel, shrink in ((0, BODY_SHRINK), (1, CORE_SHRINK)):
            cv2.fillPoly(fine[channel], [np.round((centre + (quad - centre)*shrink)*16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
        cv2.fillPoly(fine[2], [np.round(np.array([quad[0], quad[1], (quad[1] + quad[2])/2, (quad[0] + quad[3])/2])*16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    maps = np.stack([cv2.resize(m, (64, 48), interpolation=cv2.INTER_AREA) for m in fine]).astype(np.float32)/255
    found = sorted(cards_from_maps(maps), key=lambda f: f[0][0, 0])
    assert len(found) == 2
    for (corners, score, _), truth in zip(found, quads): assert np.abs(corners - truth).max() < 2.5 and score > 0.9

def test_refine_sides_snaps_and_keeps_order():
    fine = np.full((480*8, 640*8, 3), 40, np.uint8)
    card = np.array([[297.9, 292.6], [176.5, 290.3], [180.1, 118.7], [300.4, 120.2]])  # a card upside down: its printed TL at the bottom right
    cv2.fillPoly(fine, [np.round(((card + 0.5)*8 - 0.5)*16).astype(np.int32)], (250, 240, 230), shift=4)
    frame = cv2.resize(fine, (640, 480), interpolation=cv2.INTER_AREA)
    rough = card + np.array([[2.5, -2], [-3, 2], [2, 3], [-2, -2.5]])
    refined = refine_sides(frame, rough, search=7.5)
    assert np.abs(refined - card).max() < 0.3
    flat = np.full((480, 640, 3), 128, np.uint8)  # nothing to snap to: the rough corners come back
    assert np.array_equal(refine_sides(flat, rough, search=7.5), rough)

def test_exported_finder_is_within_the_hailo_ops(tmp_path):
    "The exported finder's op types, listed from its graph, are all layers the Hailo DFC parses (learned_finder.HAILO_ONNX_OPS: DFC User Guide §5.5 'Supported Layers', see 08d)."
    pytest.importorskip("torch"); pytest.importorskip("timm")
    from pokecard.finder_training import FinderNet, export_finder, onnx_ops
    from pokecard.learned_finder import HAILO_ONNX_OPS, check_finder_model, hailo_op_report
    path = export_finder(FinderNet(pretrained=False), tmp_path/"finder.onnx")  # untrained: the compiler parses the graph, not the weights
    report = hailo_op_report(path)
    assert report["unsupported"] == [], report
    assert report["prelude_ops"] == ["Transpose", "Cast", "Mul", "Add"]  # uint8 NHWC -> float NCHW, normalised: host side / model script
    assert set(report["network_ops"]) <= HAILO_ONNX_OPS and set(report["network_ops"]) == {"Conv", "Clip", "Add", "Resize", "Sigmoid"}
    assert set(onnx_ops(path)) == set(report["network_ops"]) | set(report["prelude_ops"]) | {"Constant"}  # every op accounted for
    assert check_finder_model(path)["input"] == "uint8 (1, 192, 256, 3) RGB"  # and the DB commands accept it

def test_hailo_op_report_flags_what_the_dfc_does_not_parse(tmp_path):
    from pokecard.learned_finder import hailo_op_report
    path = _model(tmp_path/"fake.onnx")
    report = hailo_op_report(path)
    assert report["prelude_ops"] == ["Cast", "Transpose"] and report["network_ops"] == ["AveragePool", "Mul"] and report["unsupported"] == []
    model = onnx.load(str(path))
    model.graph.node[-1].op_type, model.graph.node[-1].name = "TopK", "topk"  # pretend the last node were an op the DFC lacks
    onnx.save(model, str(tmp_path/"topk.onnx"))
    assert hailo_op_report(tmp_path/"topk.onnx")["unsupported"] == ["TopK (topk)"]
