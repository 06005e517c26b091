import math

import pytest
import torch

from training.losses import MultiLabelProxyAnchorLoss
from training.model import build_model
from training.module import ProxyAnchorModule, warmup_cosine
from training.preprocess import default_spec
from training.recipes import RECIPES, recipe_name, resolve_recipe
from training.train import TrainOptions

NUM_CLASSES = 5


def recipe(name="paper", **change):
    return {**resolve_recipe(name, {})[0], **change}


def make(**change) -> ProxyAnchorModule:
    return ProxyAnchorModule(build_model(16, seed=0), NUM_CLASSES, recipe(**change))


def batch(n=4):
    g = torch.Generator().manual_seed(0)
    targets = torch.tensor([[1, 0, 0, 0, 0], [0, 1, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.float32)
    return torch.randn(n, 3, 32, 32, generator=g), targets[:n], torch.arange(n)


def test_paper_recipe_is_the_papers_plus_the_authors_additions():
    hp = recipe("paper")
    assert (hp["batch_size"], hp["lr"], hp["margin"], hp["alpha"], hp["mode"]) == (32, 1e-4, 0.1, 32.0, "full")
    assert (hp["proxy_lr_multiplier"], hp["warmup_epochs"], hp["grad_clip"]) == (100.0, 1, 10.0)
    assert hp["freeze_bn"] is False and hp["schedule"] == "constant" and RECIPES["paper"]["epochs"] == 20
    assert TrainOptions(manifest="m", out="o").embedding_dim is None  # the init model's, else 512


def test_labels_default_to_every_genre_and_the_cpu_recipe_is_chosen_without_a_gpu():
    assert recipe("paper")["labels"] == recipe("cpu")["labels"] == "genres"
    assert recipe_name("auto", on_gpu=False) == "cpu" and recipe_name("auto", on_gpu=True) == "paper"
    hp, epochs = resolve_recipe("cpu", {"lr": 5e-4, "epochs": 3, "crop_scale": None})
    assert hp["lr"] == 5e-4 and epochs == 3  # what is given wins
    assert hp["crop_scale"] == RECIPES["cpu"]["crop_scale"] and hp["schedule"] == "cosine"  # the rest is the recipe's
    with pytest.raises(ValueError, match="--recipe"):
        recipe_name("fast", on_gpu=False)


def test_warmup_then_cosine_schedule():
    assert warmup_cosine(0, 4, 100) == pytest.approx(1 / 5)
    assert warmup_cosine(3, 4, 100) == pytest.approx(4 / 5)
    assert warmup_cosine(4, 4, 100) == pytest.approx(1.0)
    assert warmup_cosine(52, 4, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 4, 100) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(0, 0, 10) == 1.0 and warmup_cosine(5, 0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_uint8_batches_are_normalised_and_augmented_in_training_only():
    module = make(mode="full")
    module.spec = default_spec(32, 48)
    module.train_transform = lambda x: x[:, :, :24, :16]  # stands for the random crop at the training size
    pixels = torch.full((2, 3, 48, 32), 255, dtype=torch.uint8)
    targets = torch.zeros(2, NUM_CLASSES)

    class Trainer:
        training = False

    module._trainer = Trainer()  # what Lightning sets while fitting
    x, _, _ = module.on_after_batch_transfer((pixels, targets, torch.arange(2)), 0)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 48, 32)
    assert x[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229)
    Trainer.training = True
    assert module.on_after_batch_transfer((pixels, targets, torch.arange(2)), 0)[0].shape == (2, 3, 24, 16)
    features = torch.randn(2, 8)  # head mode's cached features pass through untouched
    assert module.on_after_batch_transfer((features, targets, torch.arange(2)), 0)[0] is features


def test_proxy_anchor_gets_unit_embeddings_and_multi_hot_targets(monkeypatch):
    module = make()
    assert isinstance(module.loss_fn, MultiLabelProxyAnchorLoss)
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
    assert seen["labels"].tolist() == batch()[1].tolist()


def test_proxies_have_their_own_param_group_at_100x():
    module = make(lr=2e-4, weight_decay=0.05)
    groups = module.configure_optimizers().param_groups
    assert [g["name"] for g in groups] == ["net", "proxies"]
    assert groups[1]["params"] == [module.loss_fn.proxies]
    assert groups[0]["lr"] == 2e-4 and groups[1]["lr"] == pytest.approx(2e-2)
    assert all(g["weight_decay"] == 0.05 for g in groups)
    assert len(groups[0]["params"]) == len(list(module.net.parameters()))  # full: the whole network
    head = make(mode="head").configure_optimizers().param_groups
    assert len(head[0]["params"]) == 2  # head: Linear weight and bias only (no BatchNorm neck here)


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


def test_relational_distillation_teaches_how_posters_relate():
    """Zero when the student relates posters as the teacher does (whatever the scale and dimensions of either),
    and a student trained by it alone comes to relate them so."""
    from training.losses import RelationalDistillationLoss

    loss_fn = RelationalDistillationLoss()
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(16, 64, generator=g)
    rotation = torch.linalg.qr(torch.randn(64, 64, generator=g))[0]
    assert loss_fn(3 * teacher @ rotation, teacher).item() < 1e-10
    student = torch.randn(16, 8, generator=g).requires_grad_(True)
    opt = torch.optim.Adam([student], lr=0.05)
    first = loss_fn(student, teacher).item()
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn(student, teacher)
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first, (first, loss.item())
