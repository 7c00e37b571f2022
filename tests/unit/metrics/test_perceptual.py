"""LPIPS and DISTS from local weight files: tiny random networks saved to tmp_path."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file, save_model

from diffstream.errors import ConfigError
from diffstream.metrics.perceptual import Dists, load_dists, load_lpips


def random_lpips_state(net: str = "alex") -> dict[str, torch.Tensor]:
    """A randomly initialised LPIPS network's state (a fresh dict over shared tensors)."""
    return dict(random_lpips(net).state_dict())


@functools.cache
def random_lpips(net: str) -> torch.nn.Module:
    """The lpips package's network, random. Its linear layers are made non-negative, as the
    published ones are (they are clamped in training), so distances are >= 0 as with real
    weights. Built once per trunk: AlexNet's initialisation takes a while."""
    import lpips

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    with torch.no_grad():
        for lin in model.lins:
            lin.model[1].weight.abs_()
    return model.eval()


@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lpips") / "lpips_alex.pth"
    torch.save(random_lpips_state(), path)
    return path


@pytest.fixture(scope="module")
def dists_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Dists()
    with torch.no_grad():  # random positive alpha/beta, as DISTS_pytorch initialises them
        model.alpha.normal_(0.1, 0.01)
        model.beta.normal_(0.1, 0.01)
    path = tmp_path_factory.mktemp("dists") / "dists.pth"
    torch.save(model.state_dict(), path)
    return path


def images(seed: int, n: int = 2, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def smoothed(x: np.ndarray) -> np.ndarray:
    return ((x.astype(np.uint16) + np.roll(x, 1, axis=2)) // 2).astype(np.uint8)


# --- LPIPS -----------------------------------------------------------------------------


def test_lpips_is_zero_for_identical_images_and_positive_otherwise(lpips_file):
    metric = load_lpips(lpips_file)
    a = images(0)
    same = metric(a, a.copy())
    diff = metric(smoothed(a), a)
    assert same.shape == diff.shape == (2,) and same.dtype == np.float64
    np.testing.assert_allclose(same, 0.0, atol=1e-7)
    assert np.all(diff > 1e-4)


def test_lpips_equals_the_lpips_package_on_the_same_weights(lpips_file):
    ref = random_lpips("alex")  # the network whose state the file holds
    a, b = images(1), images(2)
    to = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    with torch.no_grad():
        want = ref(to(a), to(b)).reshape(-1).double().numpy()
    np.testing.assert_allclose(load_lpips(lpips_file)(a, b), want, rtol=1e-5)


def test_lpips_loads_safetensors_with_one_name_per_shared_tensor(tmp_path, lpips_file):
    # safetensors stores a tensor once: save_model keeps one of LPIPS's two names for each
    # linear layer (lin0 / lins.0); either name must do
    a = images(0)
    want = load_lpips(lpips_file)(smoothed(a), a)
    saved = tmp_path / "saved.safetensors"
    save_model(random_lpips("alex"), str(saved))
    np.testing.assert_allclose(load_lpips(saved)(smoothed(a), a), want, rtol=1e-6)
    for drop in ({f"lin{i}" for i in range(5)}, {"lins"}):  # lin0 ... lin4, or lins.*
        state = {k: v for k, v in random_lpips_state().items() if k.split(".")[0] not in drop}
        assert len(state) == 17  # 22 names, 17 tensors
        path = tmp_path / f"without_{min(drop)}.safetensors"
        save_file(state, str(path))
        np.testing.assert_allclose(load_lpips(path)(smoothed(a), a), want, rtol=1e-6)


def test_lpips_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "lpips_alex.pth"
    with pytest.raises(ConfigError, match=r"nowhere/lpips_alex\.pth: weights file not found"):
        load_lpips(path)


def test_lpips_file_for_another_trunk_is_refused(tmp_path):
    path = tmp_path / "lpips_squeeze.pth"
    torch.save(random_lpips_state("squeeze"), path)
    with pytest.raises(ConfigError, match=r"lpips_squeeze\.pth: tensors do not match the "
                                          r"LPIPS \(alex\) network \(.*wrong shape"):
        load_lpips(path, net="alex")


def test_lpips_file_with_a_missing_tensor_is_refused(tmp_path):
    state = random_lpips_state()
    del state["net.slice1.0.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"partial\.pth: .*missing: net\.slice1\.0\.weight"):
        load_lpips(path)


def test_not_a_state_dict_or_not_a_weights_file(tmp_path):
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ConfigError, match=r"tensor\.pth: expected a state_dict"):
        load_lpips(tensor)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match=r"junk\.pth: cannot read weights"):
        load_dists(junk)


def test_unknown_lpips_trunk(tmp_path):
    with pytest.raises(ConfigError, match="alex, vgg, squeeze"):
        load_lpips(tmp_path / "x.pth", net="resnet")


def test_bad_images_raise_value_error(lpips_file):
    metric = load_lpips(lpips_file)
    a = images(0)
    with pytest.raises(ValueError, match="uint8"):
        metric(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="paired"):
        metric(a[:1], a)


# --- DISTS -----------------------------------------------------------------------------


def test_dists_is_zero_for_identical_images_and_positive_otherwise(dists_file):
    metric = load_dists(dists_file)
    a = images(0)
    np.testing.assert_allclose(metric(a, a.copy()), 0.0, atol=1e-6)
    assert np.all(metric(smoothed(a), a) > 1e-4)


def test_dists_equals_the_reference_implementation(dists_file):
    # DISTS_pytorch builds torchvision's vgg16(pretrained=True), a download; give it a
    # random VGG instead and load our file into it: its state_dict names must be ours
    dists_pt = pytest.importorskip("DISTS_pytorch.DISTS_pt")
    from torchvision.models.vgg import cfgs, make_layers

    class RandomVgg(torch.nn.Module):
        def __init__(self, **_: object) -> None:
            super().__init__()
            self.features = make_layers(cfgs["D"])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dists_pt.models, "vgg16", RandomVgg)
        ref = dists_pt.DISTS(load_weights=False)
    ref.load_state_dict(torch.load(dists_file, weights_only=True), strict=True)
    a, b = images(3), smoothed(images(3))
    to = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    want = ref(to(b), to(a)).reshape(-1).double().detach().numpy()
    np.testing.assert_allclose(load_dists(dists_file)(b, a), want, rtol=1e-5)


def test_dists_refuses_an_lpips_file(lpips_file):
    with pytest.raises(ConfigError, match=r"lpips_alex\.pth: tensors do not match the DISTS"):
        load_dists(lpips_file)
