import hashlib
import json

import pytest
import torch
import torchvision

from training.model import build_model, load_backbone_weights
from training.weights import WeightsError, resolve_weights, sha256_file

from .conftest import run_cli


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    """A torchvision-format ResNet-50 state dict (with fc.*), like resnet50-*.pth."""
    torch.manual_seed(1234)
    net = torchvision.models.resnet50()
    path = tmp_path_factory.mktemp("weights") / "resnet50-test.pth"
    torch.save(net.state_dict(), path)
    return path, sha256_file(path), net.state_dict()


def test_sha256_file(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"marquee")
    assert sha256_file(p) == hashlib.sha256(b"marquee").hexdigest()


def test_verified_file_loads_into_backbone(resnet_weights):
    path, digest, state = resnet_weights
    assert resolve_weights(str(path), digest.upper()) == path
    model = build_model(16, seed=0)
    assert not torch.equal(model.backbone.conv1.weight, state["conv1.weight"])
    load_backbone_weights(model, path)
    for key in ("conv1.weight", "layer4.2.bn3.running_var", "bn1.bias"):
        assert torch.equal(model.backbone.state_dict()[key], state[key])


def test_checksum_mismatch_refused(tmp_path):
    p = tmp_path / "w.pth"
    p.write_bytes(b"pretend weights")
    with pytest.raises(WeightsError, match="SHA-256 mismatch .* refusing"):
        resolve_weights(str(p), "0" * 64)
    with pytest.raises(WeightsError, match="64 hexadecimal"):
        resolve_weights(str(p), "abc")
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights(str(tmp_path / "nope.pth"), "0" * 64)


def test_url_download_is_cached_and_verified(tmp_path):
    src = tmp_path / "src.pth"
    src.write_bytes(b"some weights bytes")
    digest = sha256_file(src)
    cache = tmp_path / "cache"
    got = resolve_weights(src.as_uri(), digest, cache_dir=cache)
    assert got.parent == cache and got.read_bytes() == src.read_bytes()
    src.write_bytes(b"changed upstream")  # cached copy is used (and re-verified)
    assert resolve_weights(src.as_uri(), digest, cache_dir=cache) == got
    with pytest.raises(WeightsError, match="mismatch"):
        resolve_weights(src.as_uri(), "f" * 64, cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == [got.name]  # nothing unverified left behind
    with pytest.raises(WeightsError, match="could not download"):
        resolve_weights((tmp_path / "missing.pth").as_uri(), digest, cache_dir=tmp_path / "c2")


def test_wrong_architecture_rejected(tmp_path):
    p = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), p)
    with pytest.raises(ValueError, match="does not match torchvision resnet50"):
        load_backbone_weights(build_model(8), p)


def test_cli_refuses_mismatched_weights(tmp_path, small_manifest, resnet_weights):
    path, digest, _ = resnet_weights
    out = tmp_path / "model"
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    proc = run_cli("export-base", "--manifest", str(small_manifest), "--out", str(out),
                   "--weights", str(path), "--weights-sha256", wrong, check=False)  # fmt: skip
    assert proc.returncode == 1
    assert "SHA-256 mismatch" in proc.stderr and "refusing" in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["event"] == "error"
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no temp dir left either
    proc = run_cli("export-base", "--manifest", str(small_manifest), "--out", str(out),
                   "--weights", str(path), check=False)  # fmt: skip
    assert proc.returncode == 2 and "--weights-sha256" in proc.stderr
