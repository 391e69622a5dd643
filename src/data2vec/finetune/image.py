"""Image classification on a data2vec vision encoder (SPEC B.2): mean-pooled ``fc_norm`` head.

logits = head(fc_norm(mean over patches of the last block's output)) — BEiT's fine-tuning layout (the
pretraining final LayerNorm is not used). Layer-wise learning-rate decay (BEiT layer ids: embeddings
and shared position bias 0, block i -> i + 1, fc_norm and head depth + 1), label smoothing, drop path
(``encoder.drop_path_rate``), and a linear-probe mode (frozen encoder in eval mode, only
``fc_norm`` + ``head`` train). Implements the training-task interface of ``data2vec.train.loop.Trainer``.
Mixup / cutmix (timm semantics, batch mode: the batch is mixed with its reverse; cutmix's lambda is
corrected to the pasted box's true area; label smoothing is applied to the mixed soft targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from data2vec.core.data2vec import StepLoss


@dataclass(kw_only=True)
class ImageHeadConfig:
    num_classes: int = 0  # 0 = the number of class folders in the data
    label_smoothing: float = 0.1
    layer_decay: float = 0.65  # lr of layer l = lr * layer_decay ** (depth + 1 - l); 1 = off
    linear_probe: bool = False  # freeze the encoder; train fc_norm + head only
    mixup: float = 0.0  # Beta(a, a) mixing of image pairs (official v1 ViT-B: 0.8; 0 = off)
    cutmix: float = 0.0  # Beta(a, a) area of a pasted box (official: 1.0; 0 = off)
    mix_prob: float = 1.0  # probability of mixing a batch at all
    mix_switch_prob: float = 0.5  # with both on: probability of cutmix instead of mixup


class ImageClassifier(nn.Module):
    log_keys = ("acc",)
    units_name = "examples"

    def __init__(self, encoder: nn.Module, cfg: ImageHeadConfig):
        super().__init__()
        if cfg.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {cfg.num_classes}")
        self.cfg = cfg
        self.encoder = encoder
        C = encoder.embed_dim
        self.fc_norm = nn.LayerNorm(C, eps=encoder.cfg.layer_norm_eps)
        self.head = nn.Linear(C, cfg.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)
        if cfg.linear_probe:
            encoder.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.linear_probe:
            self.encoder.eval()  # frozen features: no dropout / drop path
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.encoder(images)
        return self.head(self.fc_norm(out.layer_outputs[-1].mean(1)))

    # ---- training-task interface ----------------------------------------------------------
    @property
    def trainable(self) -> nn.Module:
        return self

    @staticmethod
    def num_units(batch: dict) -> int:
        return int(batch["labels"].numel())

    def step_loss(self, batch: dict, wrapped: nn.Module) -> StepLoss:
        x, y = batch["source"], batch["labels"]
        targets = soft_targets(y, self.cfg.num_classes, self.cfg.label_smoothing)
        x, targets = mix_batch(x, targets, self.cfg)
        logits = wrapped(x).float()
        loss = -(targets * F.log_softmax(logits, dim=-1)).sum()
        acc = (logits.argmax(-1) == targets.argmax(-1)).float().mean().item()
        return StepLoss(loss, int(y.numel()), {"acc": acc})

    def after_update(self, step: int) -> dict:
        return {}

    def optim_param_groups(self, weight_decay: float, no_decay_1d: bool) -> list[dict]:
        """AdamW groups with ``lr_scale`` for layer-wise decay and no weight decay on 1-D parameters."""
        depth = len(self.encoder.context_encoder.layers)
        groups: dict[tuple[int, bool], dict] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith("encoder.context_encoder.layers."):
                layer = int(name.split(".")[3]) + 1
            elif name.startswith("encoder."):
                layer = 0
            else:
                layer = depth + 1
            no_wd = no_decay_1d and (p.ndim <= 1 or name.endswith(".bias") or "token" in name or "rel_pos" in name)
            g = groups.setdefault((layer, no_wd), {"params": [], "weight_decay": 0.0 if no_wd else weight_decay,
                                                   "lr_scale": self.cfg.layer_decay ** (depth + 1 - layer)})
            g["params"].append(p)
        return list(groups.values())


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot with label smoothing as in ``F.cross_entropy(label_smoothing=...)``: (1 - s) + s / K on the label."""
    off = smoothing / num_classes
    t = torch.full((labels.numel(), num_classes), off, device=labels.device)
    return t.scatter_(1, labels[:, None], 1.0 - smoothing + off)


def mix_batch(x: torch.Tensor, targets: torch.Tensor, cfg: ImageHeadConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix of the batch with its reverse (global torch RNG, so it is restored on resume)."""
    use_mixup, use_cutmix = cfg.mixup > 0, cfg.cutmix > 0
    if not (use_mixup or use_cutmix) or torch.rand(()).item() >= cfg.mix_prob:
        return x, targets
    cut = use_cutmix and (not use_mixup or torch.rand(()).item() < cfg.mix_switch_prob)
    alpha = cfg.cutmix if cut else cfg.mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    flipped = x.flip(0)
    if cut:
        H, W = x.shape[-2:]
        rh, rw = int(H * (1 - lam) ** 0.5), int(W * (1 - lam) ** 0.5)
        cy, cx = int(torch.randint(H, ())), int(torch.randint(W, ()))
        y0, y1 = max(cy - rh // 2, 0), min(cy + rh // 2, H)
        x0, x1 = max(cx - rw // 2, 0), min(cx + rw // 2, W)
        x = x.clone()
        x[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)
    else:
        x = lam * x + (1 - lam) * flipped
    return x, lam * targets + (1 - lam) * targets.flip(0)


@torch.no_grad()
def evaluate(model: ImageClassifier, loader, device: torch.device) -> dict:
    """Top-1 / top-5 accuracy and mean cross-entropy over a loader."""
    model.eval()
    n = top1 = top5 = 0
    nll = 0.0
    for batch in loader:
        x, y = batch["source"].to(device), batch["labels"].to(device)
        logits = model(x).float()
        nll += F.cross_entropy(logits, y, reduction="sum").item()
        k = min(5, logits.size(-1))
        topk = logits.topk(k, dim=-1).indices
        top1 += (topk[:, 0] == y).sum().item()
        top5 += (topk == y[:, None]).any(-1).sum().item()
        n += y.numel()
    return {"top1": top1 / max(n, 1), "top5": top5 / max(n, 1), "loss": nll / max(n, 1), "examples": n}
