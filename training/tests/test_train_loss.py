import pytest
import torch
from pytorch_metric_learning.losses import ProxyAnchorLoss

from training.model import build_model
from training.module import ProxyAnchorModule
from training.train import RECIPE_KEYS, TrainOptions

NUM_CLASSES = 5


def recipe(**change):
    opts = TrainOptions(manifest="unused", out="unused")
    return {**{k: getattr(opts, k) for k in RECIPE_KEYS}, **change}


def make(**change) -> ProxyAnchorModule:
    return ProxyAnchorModule(build_model(16, seed=0), NUM_CLASSES, recipe(**change))


def batch(n=4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.tensor([0, 1, 1, 3][:n]), torch.arange(n)


def test_defaults_are_the_papers_recipe_plus_the_authors_additions():
    hp = recipe()
    assert (hp["batch_size"], hp["lr"], hp["margin"], hp["alpha"], hp["mode"]) == (32, 1e-4, 0.1, 32.0, "full")
    assert (hp["proxy_lr_multiplier"], hp["warmup_epochs"], hp["grad_clip"]) == (100.0, 1, 10.0)
    assert hp["labels"] == "single_genre" and hp["freeze_bn"] is False
    assert TrainOptions(manifest="m", out="o").embedding_dim is None  # the init model's, else 512


def test_proxy_anchor_gets_unit_embeddings_and_integer_labels(monkeypatch):
    module = make()
    assert isinstance(module.loss_fn, ProxyAnchorLoss)
    assert (module.loss_fn.margin, module.loss_fn.alpha, module.loss_fn.num_classes) == (0.1, 32.0, NUM_CLASSES)
    assert module.loss_fn.proxies.shape == (NUM_CLASSES, 16)
    seen = {}
    real = module.loss_fn.forward

    def spy(embeddings, labels, *args, **kwargs):
        seen.update(embeddings=embeddings.detach(), labels=labels)
        return real(embeddings, labels, *args, **kwargs)

    monkeypatch.setattr(module.loss_fn, "forward", spy)
    module.train()
    loss = module.training_step(batch(), 0)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad
    assert seen["embeddings"].dtype == torch.float32 and seen["embeddings"].shape == (4, 16)
    assert torch.allclose(seen["embeddings"].norm(dim=1), torch.ones(4), atol=1e-5)
    assert seen["labels"].dtype == torch.int64 and seen["labels"].tolist() == [0, 1, 1, 3]


def test_proxies_have_their_own_param_group_at_100x():
    module = make(lr=2e-4, weight_decay=0.05)
    groups = module.configure_optimizers().param_groups
    assert [g["name"] for g in groups] == ["net", "proxies"]
    assert groups[1]["params"] == [module.loss_fn.proxies]
    assert groups[0]["lr"] == 2e-4 and groups[1]["lr"] == pytest.approx(2e-2)
    assert all(g["weight_decay"] == 0.05 for g in groups)
    assert len(groups[0]["params"]) == len(list(module.net.parameters()))  # full: the whole network
    head = make(mode="head").configure_optimizers().param_groups
    assert len(head[0]["params"]) == 2  # head: Linear weight and bias only


def _step(module, opt):
    before = {k: v.clone() for k, v in module.named_parameters()}
    opt.zero_grad()
    module.training_step(batch(), 0).backward()
    opt.step()
    return {k: not torch.equal(before[k], v) for k, v in module.named_parameters()}


def _changed(changed, prefix):
    return {v for k, v in changed.items() if k.startswith(prefix)}


def test_full_mode_freezes_the_backbone_during_warmup_only():
    module = make(warmup_epochs=1)
    opt = module.configure_optimizers()
    module.train()
    module.set_backbone_trainable(module.backbone_trainable_in(0))
    assert module.backbone_frozen and not module.net.backbone.training and module.net.head.training
    stats = module.net.backbone.bn1.running_mean.clone()
    changed = _step(module, opt)
    assert _changed(changed, "net.backbone.") == {False}
    assert torch.equal(stats, module.net.backbone.bn1.running_mean)  # frozen statistics too
    assert _changed(changed, "net.head.") == {True} and changed["loss_fn.proxies"]

    module.set_backbone_trainable(module.backbone_trainable_in(1))
    assert not module.backbone_frozen and module.net.backbone.training
    changed = _step(module, opt)
    assert True in _changed(changed, "net.backbone.") and changed["net.backbone.conv1.weight"]


def test_head_mode_never_trains_the_backbone():
    module = make(mode="head", warmup_epochs=0)
    assert all(not module.backbone_trainable_in(e) for e in range(10))
    assert all(not p.requires_grad for p in module.net.backbone.parameters())
    module.train()
    assert not module.net.backbone.training
    features = torch.randn(4, 2048)
    emb = module.embed(features)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(emb, module.net.embed_features(features))


def test_freeze_bn_keeps_batchnorm_fixed_after_warmup():
    module = make(warmup_epochs=0, freeze_bn=True)
    opt = module.configure_optimizers()
    module.train()
    module.set_backbone_trainable(module.backbone_trainable_in(0))
    assert not module.net.backbone.bn1.training and module.net.backbone.training
    stats = module.net.backbone.bn1.running_var.clone()
    changed = _step(module, opt)
    assert not changed["net.backbone.bn1.weight"] and changed["net.backbone.conv1.weight"]
    assert torch.equal(stats, module.net.backbone.bn1.running_var)
