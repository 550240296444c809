"""The user's data (image folders, .npz/.pt, unlabeled with agreement), torchvision:NAME with --weights,
torch.export programs and input-spec files, at the library level."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

import robustprune as rp
from robustprune.data.fashion_mnist import DataError
from robustprune.data.user import load_user_data
from robustprune.deploy import save_model
from robustprune.evaluate.harness import EvalSettings
from robustprune.models import ModelRefError, load_model
from robustprune.spec import InputSpec, SpecError, load_spec_file
from robustprune.structure import PruneSpace, export, load_pruned, save_pruned
from tests.helpers import randomize_norms

SETTINGS = EvalSettings(n_attack=6, n_corruption=6, pgd_steps=2, latency=False)
GREY = InputSpec((1, 8, 8), (0.5,), (0.25,), 3)


def small_net(channels: int = 3, classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, classes),
    )
    return randomize_norms(net)


def _png(path, value, mode="L", size=(20, 12)):
    from PIL import Image

    Image.new(mode, size, value).save(path)


def test_image_folder_labels_resizes_converts_and_scales(tmp_path):
    for name, value in (("b_bright", 255), ("a_dark", 0)):
        (tmp_path / name).mkdir()
        _png(tmp_path / name / "1.png", value)
    _png(tmp_path / "a_dark" / "2.bmp", (255, 0, 0), mode="RGB")  # red, converted to grey
    (tmp_path / "a_dark" / "notes.txt").write_text("not an image")
    spec = InputSpec((1, 8, 8), (0.0,), (1.0,), 3, value_range=(0.0, 255.0))
    x, y = load_user_data(tmp_path, spec)
    assert x.shape == (3, 1, 8, 8) and y.tolist() == [0, 0, 1]  # classes in sorted folder order
    assert torch.all(x[0] == 0) and torch.all(x[2] == 255.0)
    assert torch.allclose(x[1], torch.full((1, 8, 8), 76.0))  # ITU-R 601 luma of pure red: 0.299 * 255
    rgb = InputSpec((3, 4, 6), (0.5,), (0.25,), 3)
    x_rgb, _ = load_user_data(tmp_path, rgb)
    assert x_rgb.shape == (3, 3, 4, 6) and torch.allclose(x_rgb[1, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    flat = tmp_path / "flat"
    flat.mkdir()
    _png(flat / "only.png", 128)
    x_flat, y_flat = load_user_data(flat, spec)
    assert y_flat is None and torch.allclose(x_flat, torch.full((1, 1, 8, 8), 128.0))


def test_sixteen_bit_images_are_scaled_by_their_depth_and_wider_ones_refused(tmp_path):
    from PIL import Image

    (tmp_path / "a").mkdir()
    ramp = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)  # a 16-bit grey PNG (mode I;16)
    Image.fromarray(ramp).save(tmp_path / "a" / "ramp.png")
    spec = InputSpec((1, 8, 8), (0.5,), (0.25,), 3, value_range=(-1.0, 1.0))
    x, y = load_user_data(tmp_path, spec)
    assert y.tolist() == [0]
    torch.testing.assert_close(x[0, 0], torch.from_numpy(ramp / 65535.0 * 2.0 - 1.0).float(), atol=1e-5, rtol=0)
    rgb, _ = load_user_data(tmp_path, InputSpec((3, 8, 8), (0.5,), (0.25,), 3))
    assert torch.equal(rgb[0, 0], rgb[0, 2]) and abs(rgb.mean().item() - 0.5) < 1e-3
    pgm = b"P5 8 8 65535\n" + ramp.astype(">u2").tobytes()  # a 16-bit PGM: Pillow opens it as 32-bit mode I
    (tmp_path / "a" / "ramp.pgm").write_bytes(pgm)
    (tmp_path / "a" / "._ramp.png").write_bytes(b"macOS resource fork, not an image")  # hidden: skipped
    x, y = load_user_data(tmp_path, spec)
    assert y.tolist() == [0, 0] and torch.equal(x[0], x[1])
    Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)).save(tmp_path / "a" / "wide.tif")
    with pytest.raises(DataError, match="wide.tif is a signed or 32-bit integer image"):
        load_user_data(tmp_path, spec)
    Image.fromarray(np.full((8, 8), 200, dtype=np.int32)).save(tmp_path / "a" / "wide.tif")  # small values: still
    with pytest.raises(DataError, match="wide.tif is a signed or 32-bit integer image"):  # 32 bits, white level unknown
        load_user_data(tmp_path, spec)
    Image.fromarray(np.full((8, 8), 200, dtype=np.int16)).save(tmp_path / "a" / "wide.tif")  # signed 16 bits: mode I
    with pytest.raises(DataError, match="wide.tif is a signed or 32-bit integer image"):
        load_user_data(tmp_path, spec)
    (tmp_path / "a" / "wide.tif").unlink()
    Image.fromarray(np.ones((8, 8), dtype=np.float32)).save(tmp_path / "a" / "float.tif")
    with pytest.raises(DataError, match="float.tif is a float image"):
        load_user_data(tmp_path, spec)


def test_class_folders_are_read_at_any_depth_and_an_empty_one_is_refused(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "sub").mkdir(parents=True)
    _png(tmp_path / "a" / "sub" / "deep.png", 10)  # as torchvision's ImageFolder: found, labelled a
    _png(tmp_path / "b" / "top.png", 20)
    _png(tmp_path / "b" / "sub" / ".hidden.png", 30)
    x, y = load_user_data(tmp_path, GREY)
    assert y.tolist() == [0, 1] and x.shape[0] == 2
    (tmp_path / "0_empty").mkdir()  # sorts first: every label would shift by one
    with pytest.raises(DataError, match="class folder 0_empty holds no images"):
        load_user_data(tmp_path, GREY)


def test_numbered_class_folders_out_of_numeric_order_are_warned_about(tmp_path):
    import warnings

    spec = InputSpec((1, 8, 8), (0.5,), (0.25,), 12)
    for c in (0, 1, 2, 10):
        (tmp_path / str(c)).mkdir()
        _png(tmp_path / str(c) / "1.png", 10 * c)
    with pytest.warns(UserWarning, match="folder 10 is label 2"):
        _, y = load_user_data(tmp_path, spec)
    assert y.tolist() == [0, 1, 2, 3]  # ImageFolder's order is kept
    (tmp_path / "10").rename(tmp_path / "3")  # name order is numeric order: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_user_data(tmp_path, spec)


def test_reading_an_image_folder_shows_a_bar_unless_quiet(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBUSTPRUNE_PROGRESS", "1")  # stderr is no terminal here
    for i in range(3):
        _png(tmp_path / f"{i}.png", 10 * i)
    load_user_data(tmp_path, GREY, quiet=True)
    assert "reading" not in capsys.readouterr().err
    load_user_data(tmp_path, GREY)
    assert "image/s" in capsys.readouterr().err  # the bar (drawn at 0/3, cleared when done)


def test_ood_data_keeps_no_labels_and_may_have_more_classes(tmp_path):
    x = torch.rand(4, 1, 8, 8)
    np.savez(tmp_path / "other.npz", x=x.numpy(), y=np.array([0, 5, 9, 7]))  # another dataset's labels
    for c in range(5):  # five class folders for a three-class model
        (tmp_path / "folders" / str(c)).mkdir(parents=True)
        _png(tmp_path / "folders" / str(c) / "1.png", 40 * c)
    for path in (tmp_path / "other.npz", tmp_path / "folders"):
        got, labels = load_user_data(path, GREY, labels=False)
        assert labels is None and got.shape[1:] == (1, 8, 8)
        with pytest.raises(DataError):
            load_user_data(path, GREY)  # as evaluation data they are refused


def test_an_image_over_pillows_size_limit_is_a_one_line_refusal(tmp_path, monkeypatch):
    from PIL import Image

    _png(tmp_path / "big.png", 10)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # an 8x8 image then counts as a decompression bomb
    with pytest.raises(DataError, match=r"could not read image .*big.png \(DecompressionBombError\)"):
        load_user_data(tmp_path, GREY)


def test_images_beside_class_folders_are_refused_not_dropped(tmp_path):
    (tmp_path / "cat").mkdir()
    _png(tmp_path / "cat" / "1.png", 10)
    _png(tmp_path / "stray.png", 20)
    with pytest.raises(DataError, match=r"class folders and also 1 image outside them \(stray.png"):
        load_user_data(tmp_path, GREY)


def test_npz_and_pt_hold_the_same_data_and_bad_files_are_one_line(tmp_path):
    x = torch.rand(5, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 1, 0])
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    for name in ("d.npz", "d.pt"):
        got_x, got_y = load_user_data(tmp_path / name, GREY)
        assert torch.equal(got_x, x) and torch.equal(got_y, y)
    np.savez(tmp_path / "no_x.npz", images=x.numpy())
    np.savez(tmp_path / "labels.npz", x=x.numpy(), y=np.array([0, 1, 2, 3, 0]))
    np.savez(tmp_path / "float_labels.npz", x=x.numpy(), y=np.zeros(5))
    np.savez(tmp_path / "nan.npz", x=np.full((2, 1, 8, 8), np.nan, dtype=np.float32))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    torch.save([x, y], tmp_path / "list.pt")
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "text_labels.npz", x=x.numpy(), y=np.array(["a", "b", "c", "b", "a"]))
    torch.save({"x": [[0.5, 0.5], [0.5]], "y": y}, tmp_path / "ragged.pt")
    torch.save({"x": x.to_sparse(), "y": y}, tmp_path / "sparse.pt")
    cases = {
        "no_x.npz": "has no 'x' (keys: images)",
        "labels.npz": "labels span 0..3; the model has 3 classes",
        "float_labels.npz": "y must be 5 integer labels",
        "nan.npz": "NaN",
        "broken.npz": "not a readable .npz",
        "list.pt": "must hold a dict with x",
        "empty": "holds no images",
        "data.csv": "evaluation data not found",
        "text_labels.npz": "y is not an array of integer labels",
        "ragged.pt": "x is not an array of numbers",
        "sparse.pt": "x must be a dense array",
    }
    for name, message in cases.items():
        with pytest.raises(DataError, match=re.escape(message)) as info:
            load_user_data(tmp_path / name, GREY)
        assert "\n" not in str(info.value)


def test_unlabeled_data_reports_agreement_with_the_original():
    model = small_net(1, 3)
    other = randomize_norms(small_net(1, 3), seed=1)
    with torch.no_grad():
        other[-1].weight.mul_(-1)  # a different classifier: agreement well below 1
    x = torch.rand(12, 1, 8, 8)
    same = rp.evaluate(model, GREY, data=(x, None), original=model, settings=SETTINGS, quiet=True)
    assert set(same["agreement"]) == {"clean", "fgsm", "pgd", "corruption"}
    assert same["agreement"]["clean"] == 1.0 and same["clean_accuracy"] is None
    report = rp.evaluate(model, GREY, data=(x, None), original=other, settings=SETTINGS, quiet=True)
    with torch.no_grad():
        expected = (model(GREY.normalize(x)).argmax(1) == other(GREY.normalize(x)).argmax(1)).double().mean()
    assert report["agreement"]["clean"] == pytest.approx(float(expected))
    # the original's top-1 as labels is exactly what the agreement metrics measure
    labels = other(GREY.normalize(x)).argmax(1)
    labeled = rp.evaluate(model, GREY, data=(x, labels), settings=SETTINGS, quiet=True)
    assert labeled["clean_accuracy"] == report["agreement"]["clean"]
    assert labeled["robust_accuracy"]["pgd"] == report["agreement"]["pgd"]
    assert labeled["corruption_accuracy"] == report["agreement"]["corruption"]
    bare = rp.evaluate(model, GREY, data=(x, None), settings=SETTINGS, quiet=True)
    assert bare["agreement"] is None and bare["robust_accuracy"] is None and bare["params"] > 0
    # OOD tensors given in code are checked as files are: normalized inputs are not pixels
    with pytest.raises(DataError, match="OOD set 'normalized'.*outside the spec's pixel range"):
        rp.evaluate(model, GREY, data=(x, None), ood={"normalized": GREY.normalize(x)}, settings=SETTINGS, quiet=True)


def test_another_pixel_range_measures_the_same_as_unit_pixels(tmp_path):
    model = small_net(1, 3)
    x, y = torch.rand(10, 1, 8, 8), torch.randint(0, 3, (10,))
    wide = InputSpec((1, 8, 8), (127.5,), (63.75,), 3, value_range=(0.0, 255.0))  # GREY, in 0..255 pixels
    unit_report = rp.evaluate(model, GREY, data=(x, y), settings=SETTINGS, quiet=True)
    wide_report = rp.evaluate(model, wide, data=(x * 255.0, y), settings=SETTINGS, quiet=True)
    for key in ("clean_accuracy", "ece", "robust_accuracy", "corruption_accuracy"):
        assert wide_report[key] == pytest.approx(unit_report[key], abs=1e-6), key
    np.savez(tmp_path / "ood.npz", x=np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32))
    with_ood = rp.evaluate(model, GREY, data=(x, y), ood=tmp_path / "ood.npz", settings=SETTINGS, quiet=True)
    assert set(with_ood["ood_auroc"]) == {"ood.npz"} and 0.0 <= with_ood["ood_auroc"]["ood.npz"] <= 1.0


def test_spec_file_round_trip_and_refusals(tmp_path):
    spec = InputSpec((3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), 100, value_range=(0.0, 255.0))
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    assert load_spec_file(path) == spec
    path.write_text(json.dumps({"shape": [1, 28, 28], "mean": 0.5, "std": 0.25, "num_classes": 10}))
    assert load_spec_file(path) == InputSpec((1, 28, 28), (0.5,), (0.25,), 10)  # scalars and no value_range
    bad = {
        '{"shape": [3, 32, 32], "mean": [0], "std": [1]}': "lacks num_classes",
        '{"shape": [3, 32], "mean": [0], "std": [1], "num_classes": 2, "colour": 1}': "unknown keys colour",
        '{"shape": [3, 32, 32], "mean": ["a"], "std": [1], "num_classes": 2}': "mean must be numbers",
        '{"shape": [3, 32, 32], "mean": [0], "std": [1], "num_classes": 2, "value_range": [0]}': "[low, high]",
        "[1, 2]": "a JSON object",
        "{": "not valid JSON",
    }
    for text, message in bad.items():
        path.write_text(text)
        with pytest.raises(SpecError, match=message):
            load_spec_file(path)


def test_factory_spec_sources(tmp_path):
    net = small_net(1, 3)
    weights = tmp_path / "w.pt"
    torch.save(net.state_dict(), weights)
    carried = small_net(1, 3)
    carried.input_spec = GREY.to_dict()
    import sys
    import types

    module = types.ModuleType("rp_spec_sources")
    module.returns_pair = lambda: (small_net(1, 3), GREY)
    module.carries = lambda: carried
    module.returns_junk = lambda: (small_net(1, 3), "spec")
    sys.modules["rp_spec_sources"] = module
    try:
        assert load_model("rp_spec_sources:returns_pair", weights=weights)[1] == GREY
        assert load_model("rp_spec_sources:carries", weights=weights)[1] == GREY
        other = InputSpec((1, 8, 8), (0.0,), (1.0,), 3)
        assert load_model("rp_spec_sources:returns_pair", weights=weights, spec=other)[1] == other  # caller wins
        with pytest.raises(ModelRefError, match=r"not a torch.nn.Module or \(torch.nn.Module, InputSpec\)"):
            load_model("rp_spec_sources:returns_junk", weights=weights)
    finally:
        del sys.modules["rp_spec_sources"]


def test_a_torchvision_video_model_loads_with_its_clip_shape_and_is_pruned(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from tests.test_layernorm import assert_masked_equals_export, random_half

    net = randomize_norms(torchvision.models.video.mc3_18(num_classes=5))
    weights = tmp_path / "mc3.pt"
    torch.save(net.state_dict(), weights)
    with pytest.raises(ModelRefError, match=r"no input spec.*C,T,H,W for video"):  # the clip length is not published
        load_model("torchvision:mc3_18", weights=weights)
    clip = InputSpec((3, 2, 16, 16), (0.43, 0.39, 0.37), (0.23, 0.22, 0.22), 5)  # (C, T, H, W)
    model, _ = load_model("torchvision:mc3_18", weights=weights, spec=clip)
    space = PruneSpace(model, clip)
    assert_masked_equals_export(space, random_half(space))


def test_torchvision_reference_with_weights_and_its_run_folder(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    spec = InputSpec((3, 32, 32), (0.5,), (0.25,), 10)
    net = randomize_norms(torchvision.models.resnet18(num_classes=10))
    weights = tmp_path / "r18.pt"
    torch.save(net.state_dict(), weights)
    model, got = load_model("torchvision:resnet18", weights=weights, spec=spec)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert got == spec and torch.equal(model(x), net(x))
    # no spec given: the one torchvision publishes for the architecture (read from the package, nothing downloaded)
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    _, published = load_model("torchvision:resnet18", weights=weights)
    assert published == InputSpec((3, 224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1000)
    with pytest.raises(ModelRefError, match="needs --weights"):
        load_model("torchvision:resnet18", spec=spec)
    with pytest.raises(ModelRefError, match="no classification model 'fasterrcnn_resnet50_fpn'"):
        load_model("torchvision:fasterrcnn_resnet50_fpn", weights=weights)
    # a run folder naming torchvision:NAME reloads without the code opt-in: it imports no code of the user's
    space = PruneSpace(model, spec)
    candidate = {g.name: range(0, g.size, 2) for g in space.groups}
    pruned = export(space, candidate)
    save_pruned(tmp_path / "run", space, candidate, pruned, model_ref="torchvision:resnet18")
    reloaded, reloaded_spec, _ = load_pruned(tmp_path / "run")
    with torch.no_grad():
        assert reloaded_spec == spec and torch.allclose(reloaded(x), pruned(x), atol=1e-6)


def test_torch_export_program_is_pruned_like_its_module(tmp_path):
    net = small_net()
    spec = InputSpec((3, 16, 16), (0.5,), (0.25,), 5)
    path = tmp_path / "net.pt2"
    save_model(net, spec, path, "torch-export")
    model, _ = load_model(str(path), spec=spec)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    space, reference = PruneSpace(model, spec), PruneSpace(net, spec)
    assert [(g.name, g.size) for g in space.groups] == [(g.name, g.size) for g in reference.groups]
    candidate = {g.name: range(0, g.size, 2) for g in space.groups}
    pruned, pruned_reference = export(space, candidate), export(reference, candidate)
    with torch.no_grad():
        assert torch.allclose(pruned(x), pruned_reference(x), atol=1e-5)
    assert not any(p.data_ptr() == q.data_ptr() for p in pruned.parameters() for q in net.parameters())
    save_pruned(tmp_path / "run", space, candidate, pruned, model_ref=str(path))
    reloaded, _, _ = load_pruned(tmp_path / "run")  # rebuilt from the program file, no code opt-in
    with torch.no_grad():
        assert torch.allclose(reloaded(x), pruned(x), atol=1e-6)


class ScaledByParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.scale = nn.Parameter(torch.ones(1))
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)) * self.scale)


def test_torch_export_program_that_cannot_be_rebuilt_is_refused(tmp_path):
    spec = InputSpec((3, 16, 16), (0.5,), (0.25,), 5)
    path = tmp_path / "scaled.pt2"
    save_model(ScaledByParameter().eval(), spec, path, "torch-export")
    with pytest.raises(ModelRefError, match="parameter scale is used by .*cannot turn back into a module") as info:
        load_model(str(path), spec=spec)
    assert "\n" not in str(info.value)
    (tmp_path / "junk.pt2").write_bytes(b"junk")
    with pytest.raises(ModelRefError, match="is not a torch.export program"):
        load_model(str(tmp_path / "junk.pt2"), spec=spec)


def test_a_program_exported_in_training_mode_is_told_to_export_after_eval(tmp_path):
    model = small_net()
    program = torch.export.export(model.train(), (torch.zeros(2, 3, 8, 8),))
    torch.export.save(program, tmp_path / "train.pt2")
    with pytest.raises(ModelRefError, match="exported in training mode .*model.eval"):
        load_model(str(tmp_path / "train.pt2"), spec=InputSpec((3, 8, 8), (0.5,), (0.25,), 5))
    dropout = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Dropout(0.5), nn.Linear(8, 5))  # no batch norm
    torch.export.save(torch.export.export(dropout.train(), (torch.zeros(2, 3, 2, 2),)), tmp_path / "drop.pt2")
    with pytest.raises(ModelRefError, match=r"training mode \(dropout is active\)"):
        load_model(str(tmp_path / "drop.pt2"), spec=InputSpec((3, 2, 2), (0.5,), (0.25,), 5))
    torch.export.save(torch.export.export(dropout.eval(), (torch.zeros(2, 3, 2, 2),)), tmp_path / "eval.pt2")
    assert load_model(str(tmp_path / "eval.pt2"), spec=InputSpec((3, 2, 2), (0.5,), (0.25,), 5))[0] is not None


def test_user_files_that_are_almost_right_get_the_right_reason(tmp_path):
    from robustprune.data.user import check_user_data

    spec = InputSpec((3, 8, 8), (0.5,), (0.25,), 5)
    script = save_model(small_net(), spec, tmp_path / "net.pt", "torchscript")
    with pytest.raises(ModelRefError, match="is a whole model .*not weights: pass it as the model"):
        load_model("tests.test_byo_models:small_net", weights=str(script), spec=spec)
    wide = InputSpec((1, 8, 8), (127.5,), (64.0,), 5, value_range=(0.0, 255.0))
    for dtype in (np.int64, np.uint16):  # numpy's default integers and 16-bit pixels
        x, _ = check_user_data("x.npz", np.full((2, 1, 8, 8), 200, dtype=dtype), np.array([0, 1]), wide)
        assert x.dtype == torch.float32 and torch.all(x == 200.0)
    # a hair outside the range (rounding in the user's pipeline) is accepted and clipped, as the attacks need
    x, _ = check_user_data("x.npz", np.full((2, 1, 8, 8), 255.00005, dtype=np.float32), np.array([0, 1]), wide)
    assert float(x.max()) == 255.0
    with pytest.raises(SpecError, match=r"mean has 2 values; expected 1 \(one per channel"):
        InputSpec((1, 8, 8), (0.1, 0.2), (0.25,), 5)


def test_torch_export_program_with_batch_norm_1d(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4)).eval()
    with torch.no_grad():
        net[2].running_mean.uniform_(-0.5, 0.5)
        net[2].running_var.uniform_(0.5, 1.5)
    spec = InputSpec((1, 8, 8), (0.5,), (0.25,), 4)
    save_model(net, spec, tmp_path / "mlp.pt2", "torch-export")
    model, _ = load_model(str(tmp_path / "mlp.pt2"), spec=spec)
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    assert isinstance(model.get_submodule("2"), nn.BatchNorm1d)
    assert [(g.name, g.size) for g in PruneSpace(model, spec).groups] == [
        (g.name, g.size) for g in PruneSpace(net, spec).groups
    ]


class _Signal(nn.Module):
    """A Conv1d classifier of 2-channel signals of length 32."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 5, padding=2)
        self.bn = nn.BatchNorm1d(8)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(nn.functional.max_pool1d(torch.relu(self.conv2(x)), 2).flatten(1))


@pytest.mark.parametrize(
    "model, spec",
    [
        (_Signal, InputSpec((2, 32), (0.0,), (0.5,), 4, value_range=(-1.0, 1.0))),
        (
            lambda: nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)),
            InputSpec((12,), (100.0,), (50.0,), 3, value_range=(0.0, 255.0)),
        ),
    ],
    ids=["signal", "features"],
)
def test_search_evaluate_and_recover_run_on_signals_and_features_in_any_range(model, spec):
    """Inputs that are not images in [0, 1]: probes, the attack proxy and evaluation run; corruptions do not apply."""
    from robustprune.probes.probeset import ProbeConfig
    from robustprune.probes.synthetic import SyntheticConfig

    torch.manual_seed(0)
    net = randomize_norms(model()).eval()
    probes = ProbeConfig(synthetic=SyntheticConfig(n=16, steps=3, batch_size=16), attack_steps=2, n_undesired=8)
    result = rp.search(net, spec, rp.SearchConfig(target_macs=0.7, steps=1, trials=2, probes=probes), quiet=True)
    assert result.target_reached and result.space.cost(result.candidate)[0] < result.space.full_macs
    low, high = spec.value_range
    x = low + (high - low) * torch.rand(12, *spec.shape)
    report = rp.evaluate(result.model, spec, data=(x, torch.arange(12) % spec.num_classes), settings=SETTINGS)
    assert 0.0 <= report["robust_accuracy"]["pgd"] <= 1.0 and report["corruption_accuracy"] is None
    config = rp.RecoverConfig(
        steps=2, batch_size=8, pool_size=8, synthetic=SyntheticConfig(steps=2), adv_fraction=0.5, adv_steps=1
    )
    recovered = rp.recover(result.model, net, spec, config, quiet=True)
    assert recovered.model(spec.normalize(x)).shape == (12, spec.num_classes)
