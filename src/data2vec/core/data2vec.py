"""The data2vec method, modality-agnostic: student, EMA teacher, targets, regression loss.

Mirrors fairseq ``examples/data2vec/models/data2vec_audio.py::Data2VecAudioModel.forward`` (and the
text model): the student encodes the masked input and a head predicts, at masked positions only, the
teacher's targets, which are built from the top-K layers of the teacher run on the *unmasked* input.

The modality supplies an encoder with this interface (see ``data2vec.modalities``):
- ``embed(source, padding_mask, mask) -> Embedded(x, unmasked, padding_mask)``: local encoder; ``x`` is
  the student's context-encoder input (masking applied where the modality applies it), ``unmasked``
  the same features without masking (the teacher input when the teacher covers only the context encoder);
- ``context_encoder(x, padding_mask) -> ContextOutput(x, layer_outputs, ffn_outputs)``;
- ``embed_dim``, ``num_layers``, ``ema_copy_keys(transformer_only)``.

data2vec 2.0 is the same code path with ``decoder`` set (fairseq ``data2vec_multi``,
``examples/data2vec/models/data2vec2.py::Data2VecMultiModel.forward``): the batch carries R masks per
sample (R = ``clone_batch``; [B*R, T], sample-major), the student encodes each sample R times keeping only the unmasked
positions (``data2vec.layers.mask_info``), the conv decoder predicts every position from them, and the
teacher runs once per sample; its targets are repeated R times. Positions that are masked *and* padded
(text rows of different lengths; fairseq masks them too, to keep equal counts per row) are left out
of the loss, a deliberate deviation from fairseq, which regresses the teacher's output at padding.
``cls_loss`` adds fairseq's image CLS loss: the student's first extra token regresses the mean target
of its sample, weighted ``cls_loss x sample_size``.

Teacher scope (fairseq names): ``ema_transformer_only`` -> the teacher is an EMA of the context encoder
and consumes the student's unmasked local features (v1 speech); otherwise it is an EMA of the whole
encoder and consumes the raw input (v1 text, image). ``ema_layers_only`` copies the keys the encoder
names (positional conv, embeddings) instead of averaging them.

The training step (``data2vec.train.loop``) calls ``forward`` and then ``update_teacher`` after each
optimizer step. Shapes: B batch, T time, C channels, M masked positions, R clones per sample (v2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from data2vec.core.ema import EMATeacher
from data2vec.core.loss import LossConfig, regression_loss_sum
from data2vec.core.monitors import CollapseConfig, compute_var, feature_spread
from data2vec.core.schedules import ema_decay
from data2vec.core.targets import TargetConfig, build_targets
from data2vec.layers.decoder import DecoderConfig
from data2vec.layers.mask_info import make_mask_info


@dataclass(kw_only=True)
class EMAConfig:
    ema_decay: float = 0.999  # initial teacher decay
    ema_end_decay: float = 0.9999  # final teacher decay
    ema_anneal_end_step: int = 30000  # updates over which the decay rises linearly
    ema_transformer_only: bool = True  # teacher = EMA of the context encoder only (local encoder shared)
    ema_layers_only: bool = True  # copy (not average) the encoder's non-layer keys, e.g. the pos-conv


@dataclass(kw_only=True)
class Data2VecConfig:
    ema: EMAConfig = field(default_factory=EMAConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    head_layers: int = 1  # v1 head: 1 = Linear(C, C) (speech, image); 2 = Linear-GELU-Linear (text)
    decoder: DecoderConfig | None = None  # set = data2vec 2.0 (kept tokens only, R clones, this conv decoder)
    cls_loss: float = 0.0  # v2 images: weight of the CLS-token loss (fairseq cls_loss)
    # v2: masked positions that fall on padding stay in the loss and in its normaliser, as in fairseq (which
    # regresses the teacher's output there); False (default) leaves them out
    loss_on_padding: bool = False


def regression_head(dim: int, num_layers: int) -> nn.Module:
    """fairseq ``final_proj`` (1 layer) or the text ``regression_head`` (C -> 2C -> GELU ... -> C)."""
    if num_layers < 1:
        raise ValueError(f"head_layers must be >= 1, got {num_layers}")
    if num_layers == 1:
        return nn.Linear(dim, dim)
    layers, cur = [], dim
    for i in range(num_layers - 1):
        nxt = dim * 2 if i == 0 else cur
        layers += [nn.Linear(cur, nxt), nn.GELU()]
        cur = nxt
    layers.append(nn.Linear(cur, dim))
    return nn.Sequential(*layers)


class StudentOutput(NamedTuple):
    pred_MC: torch.Tensor  # head output at masked, non-padded positions (rows in batch-major order)
    x_BTC: torch.Tensor  # final context-encoder output (v1: all positions; v2: extra + kept tokens)
    teacher_input: torch.Tensor  # unmasked local features (used when the teacher is the context encoder)
    padding_mask_BT: torch.Tensor | None  # of the unmasked input, one row per sample
    loss_mask: torch.Tensor | None = None  # v2: [B*R, T] positions in the loss (masked and not padded)
    cls_pred: torch.Tensor | None = None  # v2 with extra tokens: [B*R, C] student output at the first one


class Student(nn.Module):
    """Encoder + regression head (v1) or conv decoder (v2): the part that gets gradients (and DDP)."""

    def __init__(self, encoder: nn.Module, head_layers: int, decoder: DecoderConfig | None = None,
                 loss_on_padding: bool = False):
        super().__init__()
        self.encoder = encoder
        self.loss_on_padding = loss_on_padding
        is_v2 = getattr(encoder, "version", 1) == 2
        if is_v2 and decoder is None:
            raise ValueError("a data2vec 2.0 encoder needs model.decoder (the v2 conv decoder); use a *-v2 preset")
        if decoder is not None and not is_v2:
            raise ValueError("model.decoder (data2vec 2.0) needs a v2 encoder; use a *-v2 preset")
        # v1 regresses the targets from the masked positions of the full sequence (a linear head), v2 encodes the
        # kept tokens only and a conv decoder fills in every position
        self.head = regression_head(encoder.embed_dim, head_layers) if decoder is None else None
        self.decoder = encoder.build_decoder(decoder) if decoder is not None else None

    def forward(self, source, padding_mask, mask_BT, noise=None) -> StudentOutput:
        """Predictions at the masked positions. ``noise``: the v2 decoder's masked-position input (tests)."""
        if self.decoder is not None:
            return self._forward_v2(source, padding_mask, mask_BT, noise)
        return self._forward_v1(source, padding_mask, mask_BT)

    def _forward_v1(self, source, padding_mask, mask_BT) -> StudentOutput:
        e = self.encoder.embed(source, padding_mask, mask_BT)
        out = self.encoder.context_encoder(e.x, e.padding_mask)
        pred = self.head(out.x[mask_BT])
        return StudentOutput(pred, out.x, e.unmasked.detach(), e.padding_mask)

    def _forward_v2(self, source, padding_mask, mask_BT, noise=None) -> StudentOutput:
        e = self.encoder.embed(source, padding_mask)
        B = e.x.size(0)
        if mask_BT.size(0) % B:
            raise ValueError(f"the batch has {mask_BT.size(0)} mask rows for {B} samples: data2vec 2.0 needs "
                             "clone_batch masks per sample (draw them with the v2 masking config)")
        clones = mask_BT.size(0) // B
        info = make_mask_info(mask_BT)
        out = self.encoder.context_encoder(e.x, e.padding_mask, info, clones)
        dec = self.decoder(out.x, info, out.num_extra, noise)
        sel = mask_BT
        if e.padding_mask is not None and not self.loss_on_padding:
            sel = mask_BT & ~e.padding_mask.repeat_interleave(clones, 0)
        cls = out.x[:, out.num_extra - 1] if out.num_extra else None
        return StudentOutput(dec[sel], out.x, e.unmasked.detach(), e.padding_mask, sel, cls)


class StepLoss(NamedTuple):
    """What a training task returns to the loop for one micro-batch."""

    loss_sum: torch.Tensor  # summed over the batch's units; the loop divides by the global unit count
    sample_size: int
    logs: dict  # floats to log (averaged over micro-batches)


class Data2VecOutput(NamedTuple):
    loss_sum: torch.Tensor  # scaled loss summed over masked positions (divide by the global sample size)
    sample_size: int  # number of masked positions in this batch
    pred_MC: torch.Tensor
    target_MC: torch.Tensor
    target_var: torch.Tensor
    pred_var: torch.Tensor
    feature_spread: torch.Tensor | None = None  # monitors.feature_spread of the local features


class Data2Vec(nn.Module):
    def __init__(self, encoder: nn.Module, cfg: Data2VecConfig):
        super().__init__()
        self.cfg = cfg
        if not 1 <= cfg.targets.average_top_k_layers <= encoder.num_layers:
            raise ValueError(
                f"average_top_k_layers={cfg.targets.average_top_k_layers} must be between 1 and the "
                f"number of encoder layers ({encoder.num_layers})"
            )
        self.student = Student(encoder, cfg.head_layers, cfg.decoder, cfg.loss_on_padding)
        copy_keys = encoder.ema_copy_keys(cfg.ema.ema_transformer_only) if cfg.ema.ema_layers_only else set()
        self.teacher = EMATeacher(self._teacher_source(), copy_keys)

    def _teacher_source(self) -> nn.Module:
        enc = self.student.encoder
        return enc.context_encoder if self.cfg.ema.ema_transformer_only else enc

    @torch.no_grad()
    def update_teacher(self, num_updates: int) -> float:
        """EMA step after ``num_updates`` optimizer updates (fairseq ``set_num_updates``); returns the decay."""
        c = self.cfg.ema
        decay = ema_decay(num_updates, c.ema_decay, c.ema_end_decay, c.ema_anneal_end_step)
        self.teacher.update(self._teacher_source(), decay)
        return decay

    @torch.no_grad()
    def teacher_layers(self, source, padding_mask, student_out: StudentOutput) -> list[torch.Tensor]:
        """Teacher layer results (FFN or end-of-block outputs) on the unmasked input (eval mode, no grad)."""
        t = self.teacher.module
        t.eval()
        if self.cfg.ema.ema_transformer_only:
            out = t(student_out.teacher_input, student_out.padding_mask_BT)
        else:
            e = t.embed(source, padding_mask, None)
            out = t.context_encoder(e.x, e.padding_mask)
        return out.ffn_outputs if self.cfg.targets.layer_results == "ffn" else out.layer_outputs

    @torch.no_grad()
    def targets(self, source, padding_mask, student_out: StudentOutput) -> torch.Tensor:
        layers = self.teacher_layers(source, padding_mask, student_out)
        return build_targets(layers, self.cfg.targets, student_out.padding_mask_BT)

    # ---- the training-task interface of data2vec.train.loop.Trainer ------------------------
    log_keys = ("target_var", "pred_var", "feature_spread")
    units_name = "masked"  # the loss is a mean over masked positions

    @property
    def trainable(self) -> nn.Module:
        return self.student

    def num_units(self, batch: dict) -> int:
        if self.cfg.loss_on_padding and self.cfg.decoder is not None and batch.get("padding_mask") is not None:
            return int(batch["mask"].sum())  # fairseq: padded masked positions count too
        return int(batch["num_masked"])

    def step_loss(self, batch: dict, wrapped: nn.Module | None = None) -> StepLoss:
        out = self(batch, wrapped)
        return StepLoss(out.loss_sum, out.sample_size,
                        {"target_var": out.target_var.item(), "pred_var": out.pred_var.item(),
                         "feature_spread": out.feature_spread.item()})

    def after_update(self, step: int) -> dict:
        return {"ema_decay": self.update_teacher(step)}

    def compile_targets(self) -> list[nn.Module]:
        """The Transformer stacks of student and teacher and the student's local feature encoder (the speech CNN;
        ``train.compile``)."""
        t, enc = self.teacher.module, self.student.encoder
        local = [m for m in (getattr(enc, "feature_extractor", None), getattr(enc, "local_encoder", None)) if m]
        return [enc.context_encoder, t if self.cfg.ema.ema_transformer_only else t.context_encoder, *local]

    def forward(self, batch: dict, student: nn.Module | None = None) -> Data2VecOutput:
        """One data2vec pass: the student on the masked input, the EMA teacher's targets on the full input, the
        regression loss between them. ``student`` may be the DDP-wrapped ``self.student``."""
        s = self.forward_student(batch, student)
        y = self.forward_targets(batch, s)
        out = self.forward_loss(s, y, batch["mask"])
        return out._replace(feature_spread=feature_spread(s.teacher_input, s.padding_mask_BT))

    def forward_student(self, batch: dict, student: nn.Module | None = None) -> StudentOutput:
        if batch["mask"] is None:
            raise ValueError("the batch has no mask: the collator must provide batch['mask']")
        # A micro-batch may have no masked position (very short text blocks): the loss is then an empty sum,
        # 0, still connected to every student parameter, so DDP ranks stay in step.
        return (student or self.student)(batch["source"], batch.get("padding_mask"), batch["mask"])

    def forward_targets(self, batch: dict, s: StudentOutput) -> torch.Tensor:
        """[B, T, C] targets of every position (no grad)."""
        # encoders whose input is corrupted in the collator (v1 text) need the clean input for the teacher
        # (fairseq#4881, see the text encoder); without it the teacher would silently see the corrupted one
        if getattr(self.student.encoder, "needs_teacher_source", False) and batch.get("teacher_source") is None:
            raise ValueError("this encoder's student input is corrupted in the collator, so the batch must carry the "
                             "clean input as batch['teacher_source'] (the teacher's input); see TextCollator")
        return self.targets(batch.get("teacher_source", batch["source"]), batch.get("padding_mask"), s)

    def forward_loss(self, s: StudentOutput, y: torch.Tensor, mask: torch.Tensor) -> Data2VecOutput:
        if s.loss_mask is None:
            target = y[mask]
        else:  # v2: one teacher pass per sample, targets repeated for its clones
            clones = s.loss_mask.size(0) // y.size(0)
            target = y.repeat_interleave(clones, 0)[s.loss_mask]
        loss_sum = regression_loss_sum(s.pred_MC, target, self.cfg.loss)
        if self.cfg.cls_loss > 0:
            if s.cls_pred is None:
                raise ValueError("model.cls_loss needs an encoder with an extra (CLS) token (num_extra_tokens >= 1)")
            cls_target = y.mean(dim=1).repeat_interleave(s.cls_pred.size(0) // y.size(0), 0)
            loss_sum = loss_sum + regression_loss_sum(s.cls_pred, cls_target, self.cfg.loss) * (
                self.cfg.cls_loss * target.size(0))
        return Data2VecOutput(
            loss_sum, int(target.size(0)), s.pred_MC, target, compute_var(target), compute_var(s.pred_MC.float())
        )
