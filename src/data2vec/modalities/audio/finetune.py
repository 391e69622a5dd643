"""Speech recognition: a CTC head on a data2vec speech encoder (fairseq ``Wav2VecCtc``, SPEC B.1).

logits = proj(final_dropout(encoder(waveform))) over a letter vocabulary (``dict.ltr.txt``, blank = 0).
What fairseq's ``wav2vec2_asr.py`` does during fine-tuning, and so does this:
- the CNN feature extractor is frozen the whole time (``encoder.local_grad_mult = 0``; the log-mel front end's
  conv is not: it is the only learned part before the projection);
- for the first ``head.freeze_finetune_updates`` updates only the output projection trains (the encoder
  runs under ``no_grad``);
- time masking (spans of ``mask_length`` frames replaced by the learned mask embedding, at least 2 spans)
  and channel masking (spans of ``mask_channel_length`` channels zeroed for the whole utterance) in
  training only; layerdrop via ``encoder.layerdrop``;
- CTC loss summed over the batch, averaged per sentence (``sentence_avg``), ``zero_infinity``;
- Adam with the tri-stage schedule.
data2vec 2.0 encoders (fairseq ``wav2vec2_asr.py`` with a ``data2vec_multi`` checkpoint) fine-tune the same
way with the v2 names: the CNN (``encoder.local_encoder``) is frozen by ``encoder.local_grad_mult = 0`` while
``project_features`` trains; masked frames of the local features are zeroed (fairseq ``encoder_zero_mask``;
v2 has no mask embedding) before the relative positional conv sees them, at least 1 span per utterance
(fairseq v2 ``compute_mask``); channel masking as for v1; the recipe's dropout and layerdrop map onto
``encoder_dropout``/``post_mlp_drop``/``prenet_dropout``, ``attention_dropout``, ``activation_dropout``,
``dropout_input`` and ``layerdrop``/``prenet_layerdrop``, and the ALiBi scale is learned (fairseq
``update_alibi``).
Deviations: masks are drawn in the collator from ``(seed, epoch, index)`` (fairseq uses the global RNG), so
they are the same in any worker and after a resume. ``data.normalize`` is taken from the pretraining
config instead of being a separate setting that can disagree with it (the fairseq pitfall in SPEC B.1).
Utterances longer than ``data.max_sample_size`` or too short for their labels are skipped, with a count.

Validation decodes greedily and reports WER/CER; ``best_metric`` (``wer``, or ``cer`` in the ``tiny`` recipe)
picks ``checkpoint_best.pt``. Beam search with a word n-gram LM is ``data2vec evaluate asr``
(``data2vec.asr.decode``).

Recipes (``data2vec finetune asr --recipe NAME``): ``base-10m``, ``base-1h``, ``base-10h``,
``base-100h``, ``base-960h`` are SPEC B.1's table (Base model, 2 GPUs x update_freq 4 x 3.2 M samples);
``tiny`` is a CPU recipe for the tiny presets (1,500 updates of 32 s of audio, lr 2e-3, gradients clipped to
norm 5, best checkpoint by CER). Default: ``tiny`` for encoders narrower than 512, else
``base-1h``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data2vec.asr.decode import greedy_decode, word_error_rate
from data2vec.asr.dictionary import LetterDictionary
from data2vec.config import merge
from data2vec.core.data2vec import StepLoss
from data2vec.data.sampler import BucketBatchSampler, build_loader
from data2vec.finetune.loop import FinetuneBase, FinetuneModel, eval_splits
from data2vec.layers.padding import lengths_to_padding_mask
from data2vec.modalities.audio.dataset import AudioDataset, read_manifest, validate_manifest
from data2vec.modalities.audio.encoder import AudioEncoderConfig, conv_frame_lengths, parse_conv_layers
from data2vec.modalities.audio.encoder_v2 import AudioEncoderV2Config, check_sample_rate
from data2vec.modalities.audio.masking import SpanMaskConfig, compute_span_mask
from data2vec.modalities.base_v2 import is_v2
from data2vec.train.config import TrainConfig
from data2vec.train.optim import OptimConfig, param_groups

_CHANNEL_MASK_OFFSET = 1 << 29  # channel masks use index + offset: a different stream from the time masks


@dataclass(kw_only=True)
class CtcHeadConfig:
    symbols: tuple[str, ...] = ()  # output letters after the 4 specials (() = from the data's dictionary)
    final_dropout: float = 0.0
    freeze_finetune_updates: int = 0  # updates during which only the output projection trains
    mask_prob: float = 0.65  # time masking (training only)
    mask_length: int = 10
    mask_channel_prob: float = 0.25  # channel masking (training only)
    mask_channel_length: int = 64
    zero_infinity: bool = True  # CTC: ignore utterances whose labels cannot be aligned


@dataclass(kw_only=True)
class AsrDataConfig:
    path: str = ""  # DIR with <subset>.tsv manifests, <subset>.<labels> and dict.<labels>.txt
    train_subset: str = "train"
    valid_subset: str = "valid"
    test_subset: str = "test"
    labels: str = "ltr"
    dictionary: str = ""  # "" = DIR/dict.<labels>.txt
    sample_rate: int = 16000
    normalize: bool = True  # must match pretraining (set from it)
    max_sample_size: int = 16000 * 30  # longer utterances are skipped (labels cannot be cropped)
    max_tokens: int = 3_200_000  # batch budget in samples (batch size x longest utterance)
    label_hours: float = 0.0  # > 0: a seeded random subset of the training set with about this much audio
    num_workers: int = 1


@dataclass(kw_only=True)
class AsrFinetuneConfig(FinetuneBase):
    task: Literal["asr"] = "asr"
    recipe: str = ""
    best_metric: Literal["wer", "cer"] = "wer"  # the validation metric that picks checkpoint_best.pt
    encoder: AudioEncoderConfig | AudioEncoderV2Config
    head: CtcHeadConfig = field(default_factory=CtcHeadConfig)
    data: AsrDataConfig = field(default_factory=AsrDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        optimizer="adam", lr=5e-5, adam_betas=(0.9, 0.98), adam_eps=1e-8, weight_decay=0.0,
        lr_scheduler="tri_stage", phase_ratio=(0.1, 0.4, 0.5), init_lr_scale=0.01, final_lr_scale=0.05))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_update=13000, log_interval=50,
                                                                   save_interval_updates=1000))


# SPEC B.1: split -> (lr, max_update, freeze_finetune_updates, mask_prob, mask_channel_prob, layerdrop)
BASE_RECIPES = {
    "base-10m": (5e-5, 13000, 10000, 0.65, 0.25, 0.1),
    "base-1h": (5e-5, 13000, 10000, 0.65, 0.25, 0.1),
    "base-10h": (5e-5, 20000, 10000, 0.65, 0.5, 0.05),
    "base-100h": (3e-5, 80000, 0, 0.65, 0.5, 0.1),
    "base-960h": (1e-4, 320000, 0, 0.5, 0.1, 0.1),
}
RECIPES = tuple(BASE_RECIPES) + ("tiny",)


def conv_spec(enc_cfg) -> str:
    """The CNN's (dim, kernel, stride) spec of an audio encoder config of either version."""
    return enc_cfg.conv_feature_layers


def finetune_encoder_config(enc, layerdrop: float):
    """The pretraining encoder config with fairseq's fine-tuning overrides (``Wav2Vec2AsrConfig``: dropout 0,
    attention dropout 0, activation dropout 0.1, input dropout 0, frozen CNN, the recipe's layerdrop); for v2
    under the ``data2vec_multi`` names fairseq maps them to (``wav2vec2_asr.py`` ``arg_overrides``). The
    log-mel front end (not in fairseq) is not frozen: its only learned part is the conv after the fixed
    filterbank, and it was trained in the runs that chose the ``tiny`` recipe (docs/results.md, issue 15)."""
    if is_v2(enc):  # v2 has more dropouts (fairseq's arg_overrides set each) and learns the ALiBi scale
        grad = 1.0 if enc.extractor_mode == "log_mel" else 0.0
        return replace(enc, local_grad_mult=grad, encoder_dropout=0.0, post_mlp_drop=0.0, prenet_dropout=0.0,
                       attention_dropout=0.0, activation_dropout=0.1, dropout_input=0.0, layerdrop=layerdrop,
                       prenet_layerdrop=layerdrop, learned_alibi_scale=enc.use_alibi_encoder)
    return replace(enc, local_grad_mult=0.0, dropout=0.0, attention_dropout=0.0, activation_dropout=0.1,
                   dropout_input=0.0, layerdrop=layerdrop)


def recipe_config(src, init: str, recipe: str | None = None) -> AsrFinetuneConfig:
    """The fine-tuning config for an encoder pretrained with ``src`` (a pretraining config, v1 or v2)."""
    enc = src.encoder
    dim = enc.embed_dim
    recipe = recipe or ("tiny" if dim < 512 else "base-1h")
    if recipe not in RECIPES:
        raise ValueError(f"unknown ASR recipe {recipe!r}; available: {', '.join(RECIPES)}")
    data = AsrDataConfig(sample_rate=src.data.sample_rate, normalize=src.data.normalize)
    if recipe == "tiny":
        # CPU scale: minutes-to-an-hour of audio (the published 5e-5 is for 95 M parameters and 13k updates).
        # Measured in docs/results.md (issue 15, log-mel encoders, 1 h of labels): lr 2e-3 chosen on validation
        # for both the pretrained and the from-scratch encoder; without clipping some seeds of either stay on
        # CTC's all-blank plateau for all 1,500 updates (CER 1.0), clip_norm 5 rescued every one; valid WER stays
        # >= 0.9 while CER falls from 1.0 to 0.4, so CER picks the best checkpoint.
        lr, max_update, freeze, mask_prob, chan_prob, layerdrop = 2e-3, 1500, 0, 0.3, 0.1, 0.05
        data = replace(data, max_tokens=32 * 16000)
        train = TrainConfig(max_update=max_update, log_interval=10, save_interval_updates=250)
        eval_interval, clip_norm, best_metric = 250, 5.0, "cer"
    else:
        lr, max_update, freeze, mask_prob, chan_prob, layerdrop = BASE_RECIPES[recipe]
        train = TrainConfig(max_update=max_update, update_freq=8, log_interval=50, save_interval_updates=1000)
        eval_interval, clip_norm, best_metric = 1000, 0.0, "wer"
    encoder = finetune_encoder_config(enc, layerdrop)
    head = CtcHeadConfig(freeze_finetune_updates=freeze, mask_prob=mask_prob, mask_channel_prob=chan_prob,
                         mask_channel_length=max(1, dim // 8) if recipe == "tiny" else 64)
    cfg = AsrFinetuneConfig(init=init, recipe=recipe, best_metric=best_metric, encoder=encoder, head=head,
                            data=data, train=train, eval_interval=eval_interval)
    cfg.optim = replace(cfg.optim, lr=lr, clip_norm=clip_norm)
    return cfg


# ---- model -----------------------------------------------------------------------------------
class CtcModel(FinetuneModel):
    """Audio encoder (v1 or v2) + dropout + linear projection to letters; a training task for ``Trainer``."""

    log_keys = ()
    units_name = "utterances"

    def __init__(self, encoder: nn.Module, cfg: CtcHeadConfig):
        super().__init__()
        if not cfg.symbols:
            raise ValueError("head.symbols is empty: the CTC head needs its letter vocabulary")
        self.cfg = cfg
        self.dictionary = LetterDictionary(list(cfg.symbols))
        self.tokens = self.dictionary.tokens
        self.encoder = encoder
        self.final_dropout = nn.Dropout(cfg.final_dropout)
        self.proj = nn.Linear(encoder.embed_dim, len(self.dictionary))
        nn.init.xavier_uniform_(self.proj.weight)  # fairseq Linear()
        nn.init.zeros_(self.proj.bias)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))  # for the freeze, saved with the model
        self.v2 = is_v2(encoder)  # masked frames: v1 takes the learned mask embedding, v2 (which has none) zeroes
        if encoder.cfg.local_grad_mult == 0:  # frozen CNN: no grads, no optimizer state, DDP-safe
            encoder.local_encoder.requires_grad_(False)

    @property
    def has_unused_parameters(self) -> bool:  # for DDP: the frozen encoder, or v1's mask_emb without time masking
        return self.cfg.freeze_finetune_updates > 0 or (not self.v2 and self.cfg.mask_prob == 0)

    @property
    def frozen(self) -> bool:
        return int(self.num_updates) < self.cfg.freeze_finetune_updates

    def forward(self, source_BS, padding_mask_BS=None, mask_BT=None, channel_mask_BC=None):
        """Returns (logits [B, T, V], frame padding mask [B, T] or None). Masks apply in training only."""
        enc = self.encoder
        train = self.training
        with torch.no_grad() if (train and self.frozen) else contextlib.nullcontext():
            if self.v2:
                e = enc.embed(source_BS, padding_mask_BS)  # frozen CNN (local_grad_mult 0), projection trains
                x, pad = e.x, e.padding_mask
                if train and mask_BT is not None:  # fairseq encoder_zero_mask: masked frames -> 0
                    x = x.masked_fill(mask_BT.unsqueeze(-1), 0.0)
            else:
                e = enc.embed(source_BS, padding_mask_BS, mask_BT if train else None)
                x, pad = e.x, e.padding_mask
            if train and channel_mask_BC is not None:
                x = x.masked_fill(channel_mask_BC[:, None, :], 0.0)
            out = enc.context_encoder(x, pad)
            x = out.x[:, out.num_extra:]
        return self.proj(self.final_dropout(x)), pad

    # ---- training-task interface (the rest: FinetuneModel) ---------------------------------
    @staticmethod
    def num_units(batch: dict) -> int:
        return int(batch["target_lengths"].numel())

    def step_loss(self, batch: dict, wrapped: nn.Module) -> StepLoss:
        logits, pad = wrapped(batch["source"], batch["padding_mask"], batch.get("mask"), batch.get("channel_mask"))
        loss = ctc_loss(logits, pad, batch["targets"], batch["target_lengths"], zero_infinity=self.cfg.zero_infinity)
        return StepLoss(loss, int(batch["target_lengths"].numel()), {})

    def after_update(self, step: int) -> dict:
        self.num_updates.fill_(step)
        return {}

    def optim_param_groups(self, weight_decay: float, no_decay_1d: bool) -> list[dict]:
        return param_groups(self, weight_decay, no_decay_1d)


def ctc_loss(logits_BTV, frame_padding_BT, targets, target_lengths, *, zero_infinity: bool = True):
    """Summed CTC loss (blank 0) over the batch; ``targets`` are concatenated label sequences."""
    lp_TBV = F.log_softmax(logits_BTV.float(), dim=-1).transpose(0, 1)
    return F.ctc_loss(lp_TBV, targets, output_lengths(logits_BTV, frame_padding_BT), target_lengths, blank=0,
                      reduction="sum", zero_infinity=zero_infinity)


def output_lengths(logits_BTV, frame_padding_BT) -> torch.Tensor:
    """Valid frames per row [B] (all T without a padding mask)."""
    B, T = logits_BTV.shape[:2]
    if frame_padding_BT is not None:
        return (~frame_padding_BT).sum(-1)
    return torch.full((B,), T, device=logits_BTV.device)


# ---- data ------------------------------------------------------------------------------------
def read_labels(path: Path, expected: int) -> list[str]:
    if not path.is_file():
        raise ValueError(f"labels {path} not found: one line per manifest entry, beside the manifest "
                         "(`data2vec prepare speech` writes them)")
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != expected:
        raise ValueError(f"{path} has {len(lines)} lines but its manifest has {expected} entries")
    return lines


class LabelledAudio(torch.utils.data.Dataset):
    """Whole utterances (no cropping) with their letter labels and reference words."""

    def __init__(self, manifest_path: Path, labels: str, dictionary: LetterDictionary, cfg: AsrDataConfig,
                 frame_lengths, seed: int):
        man = read_manifest(manifest_path)
        n_entries = len(man)
        ltr = read_labels(manifest_path.with_suffix("." + labels), n_entries)
        wrd_path = manifest_path.with_suffix(".wrd")
        words = (read_labels(wrd_path, n_entries) if wrd_path.is_file()
                 else [" ".join(line.replace(" ", "").replace("|", " ").split()) for line in ltr])
        valid, self.report = validate_manifest(man, sample_rate=cfg.sample_rate, min_samples=1)
        keep_paths = {p: i for i, p in enumerate(man.paths)}
        rows = [keep_paths[p] for p in valid.paths]
        self.skipped_long = self.skipped_short = 0
        paths, sizes, self.targets, self.words = [], [], [], []
        for p, size, r in zip(valid.paths, valid.sizes, rows):
            tgt = dictionary.encode(ltr[r])
            if size > cfg.max_sample_size:
                self.skipped_long += 1
                continue
            if int(frame_lengths(size)) < len(tgt) or not tgt:
                self.skipped_short += 1
                continue
            paths.append(p)
            sizes.append(size)
            self.targets.append(torch.tensor(tgt, dtype=torch.long))
            self.words.append(words[r])
        if not paths:
            raise ValueError(f"{manifest_path}: no usable utterance ({self.skipped_long} longer than "
                             f"data.max_sample_size={cfg.max_sample_size}, {self.skipped_short} too short for "
                             "their labels)")
        valid.paths, valid.sizes = paths, sizes
        self.audio = AudioDataset(valid, sample_rate=cfg.sample_rate, max_sample_size=cfg.max_sample_size,
                                  min_sample_size=1, normalize=cfg.normalize, seed=seed)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.sample_rate = cfg.sample_rate

    def subset(self, keep: list[int]) -> None:
        m = self.audio.manifest
        m.paths = [m.paths[i] for i in keep]
        m.sizes = [m.sizes[i] for i in keep]
        self.audio.sizes = self.audio.sizes[keep]
        self.sizes = self.sizes[keep]
        self.targets = [self.targets[i] for i in keep]
        self.words = [self.words[i] for i in keep]

    @property
    def hours(self) -> float:
        return float(self.sizes.sum()) / self.sample_rate / 3600

    def set_epoch(self, epoch: int) -> None:
        self.audio.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> dict:
        s = self.audio[index]
        return {"id": index, "epoch": s["epoch"], "source": s["source"], "target": self.targets[index],
                "words": self.words[index]}


def hours_subset(sizes: np.ndarray, sample_rate: int, hours: float, seed: int) -> list[int]:
    """A seeded random subset of utterances whose total duration first reaches ``hours``."""
    order = np.random.default_rng([seed, 13]).permutation(len(sizes))
    total = np.cumsum(sizes[order]) / sample_rate / 3600
    n = int(np.searchsorted(total, hours) + 1)
    return sorted(order[:n].tolist())


class AsrCollator:
    """Pads utterances, concatenates targets, and (training) draws time and channel masks per sample."""

    def __init__(self, *, frame_lengths, head: CtcHeadConfig, channels: int, seed: int, train: bool,
                 min_masks: int = 2):
        self.frame_lengths, self.head, self.channels, self.seed, self.train = frame_lengths, head, channels, seed, train
        # min_masks: 2 spans per utterance for v1 (wav2vec2 apply_mask), 1 for v2 (data2vec_multi compute_mask)
        self.time_cfg = SpanMaskConfig(mask_prob=head.mask_prob, mask_length=head.mask_length, min_masks=min_masks,
                                       require_same_masks=True)
        self.chan_cfg = SpanMaskConfig(mask_prob=head.mask_channel_prob, mask_length=head.mask_channel_length,
                                       min_masks=0, require_same_masks=True)

    def __call__(self, samples: list[dict]) -> dict:
        B = len(samples)
        lengths = torch.tensor([s["source"].numel() for s in samples])
        S = int(lengths.max())
        source = torch.zeros(B, S)
        for b, s in enumerate(samples):
            source[b, : lengths[b]] = s["source"]
        pad = lengths_to_padding_mask(lengths, S) if bool((lengths < S).any()) else None
        T = int(self.frame_lengths(S))
        frames = torch.as_tensor(self.frame_lengths(lengths)).clamp(max=T)
        frame_pad = lengths_to_padding_mask(frames, T)
        ids = [int(s["id"]) for s in samples]
        out = {"source": source, "padding_mask": pad, "targets": torch.cat([s["target"] for s in samples]),
               "target_lengths": torch.tensor([s["target"].numel() for s in samples]),
               "indices": torch.tensor(ids), "words": [s["words"] for s in samples]}
        if self.train:
            epoch = samples[0]["epoch"]
            if self.head.mask_prob > 0:
                out["mask"] = torch.from_numpy(compute_span_mask(
                    (B, T), frame_pad.numpy() if frame_pad.any() else None, self.time_cfg, seed=self.seed,
                    epoch=epoch, indices=ids))
            if self.head.mask_channel_prob > 0:
                out["channel_mask"] = torch.from_numpy(compute_span_mask(
                    (B, self.channels), None, self.chan_cfg, seed=self.seed, epoch=epoch,
                    indices=[i + _CHANNEL_MASK_OFFSET for i in ids]))
        return out


class AsrData:
    def __init__(self, cfg: AsrFinetuneConfig, dist, seed: int):
        d = cfg.data
        check_sample_rate(cfg.encoder, d.sample_rate)
        root = Path(d.path)
        if not d.path or not (root / f"{d.train_subset}.tsv").is_file():
            raise ValueError(f"--data must be a directory with {d.train_subset}.tsv, {d.train_subset}.{d.labels} "
                             f"and dict.{d.labels}.txt (e.g. `data2vec prepare speech --out DIR`)")
        dict_path = Path(d.dictionary) if d.dictionary else root / f"dict.{d.labels}.txt"
        if not dict_path.is_file():
            raise ValueError(f"letter dictionary {dict_path} not found (set data.dictionary)")
        self.dictionary = LetterDictionary.load(dict_path)
        conv = parse_conv_layers(conv_spec(cfg.encoder))
        self.frame_lengths = lambda n: conv_frame_lengths(n, conv)
        self.train = LabelledAudio(root / f"{d.train_subset}.tsv", d.labels, self.dictionary, d, self.frame_lengths, seed)
        if d.label_hours > 0:
            self.train.subset(hours_subset(self.train.sizes, d.sample_rate, d.label_hours, seed))

        self.sets, self.empty = {}, []
        for name, sub in eval_splits(cfg, d):
            path = root / f"{sub}.tsv"
            if not path.is_file():
                continue
            if len(read_manifest(path)) == 0:  # e.g. a tiny built-in corpus: no held-out voice left
                self.empty.append(path.name)
                continue
            self.sets[name] = LabelledAudio(path, d.labels, self.dictionary, d, self.frame_lengths, seed)
        self.sampler = BucketBatchSampler(self.train.sizes, max_tokens=d.max_tokens, seed=seed,
                                          num_replicas=dist.world_size, rank=dist.rank)
        C, m = cfg.encoder.embed_dim, 1 if is_v2(cfg.encoder) else 2  # least time-mask spans: fairseq v2 1, v1 2
        self.train_collate = AsrCollator(frame_lengths=self.frame_lengths, head=cfg.head, channels=C, seed=seed,
                                         train=True, min_masks=m)
        self.eval_collate = AsrCollator(frame_lengths=self.frame_lengths, head=cfg.head, channels=C, seed=seed,
                                        train=False, min_masks=m)
        self.cfg = d
        self.seed = seed

    def describe(self) -> str:
        skipped = self.train.skipped_long + self.train.skipped_short
        return (f"{len(self.train):,} labelled training utterances ({self.train.hours * 60:.1f} min"
                + (f", subset of data.label_hours={self.cfg.label_hours:g}" if self.cfg.label_hours > 0 else "")
                + (f"; {skipped} skipped: too long or too short for their labels" if skipped else "")
                + f"), {len(self.dictionary)} output symbols"
                + (f"; {', '.join(self.empty)} empty: no evaluation on it" if self.empty else ""))

    def make_loader(self, epoch: int, start_batch: int = 0):
        return build_loader(self.train, self.sampler, self.train_collate, num_workers=self.cfg.num_workers,
                            epoch=epoch, start_batch=start_batch)

    def eval_loader(self, name: str):
        return split_loader(self.sets[name], self.eval_collate, self.cfg.max_tokens, self.seed, self.cfg.num_workers)


def split_loader(ds: "LabelledAudio", collate: "AsrCollator", max_tokens: int, seed: int, num_workers: int):
    """Length-bucketed batches of a whole labelled split, for validation, test and ``data2vec evaluate``."""
    sampler = BucketBatchSampler(ds.sizes, max_tokens=max_tokens, seed=seed)
    return build_loader(ds, sampler, collate, num_workers=num_workers, epoch=1)


# ---- evaluation --------------------------------------------------------------------------------
@torch.no_grad()
def transcribe_batches(model: CtcModel, loader, device, decoder=None, tokens=None) -> tuple[list[str], list[str], float, int]:
    """(references, hypotheses, summed CTC loss, utterances) over a loader; greedy unless ``decoder``."""
    model.eval()
    refs, hyps, loss, n = [], [], 0.0, 0
    for batch in loader:
        src = batch["source"].to(device)
        pad = batch["padding_mask"].to(device) if batch["padding_mask"] is not None else None
        logits, fpad = model(src, pad)
        loss += ctc_loss(logits, fpad, batch["targets"].to(device), batch["target_lengths"].to(device)).item()
        lengths = output_lengths(logits, fpad).cpu()
        logits = logits.float().cpu()
        hyps += decoder.decode(logits, lengths) if decoder is not None else greedy_decode(logits, lengths, tokens)
        refs += batch["words"]
        n += len(batch["words"])
    return refs, hyps, loss, n


def evaluate(model: CtcModel, loader, device, tokens: list[str], decoder=None) -> dict:
    """WER/CER (corpus level) and CTC loss per utterance, with up to 5 example transcripts."""
    refs, hyps, loss, n = transcribe_batches(model, loader, device, decoder, tokens)
    out = word_error_rate(refs, hyps)
    out |= {"loss": loss / max(n, 1), "utterances": n,
            "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:5]]}
    return out


class _AsrTask:
    name = "asr"
    modality = "audio"
    config_cls = AsrFinetuneConfig
    metric = "wer"
    higher_is_better = False
    recipes = RECIPES

    @staticmethod
    def default_config(src, init: str, recipe: str | None = None) -> AsrFinetuneConfig:
        return recipe_config(src, init, recipe)

    build_data = AsrData

    @staticmethod
    def complete_config(cfg, data: AsrData):
        symbols = tuple(data.dictionary.tokens[4:])
        if not cfg.head.symbols:
            return merge(cfg, {"head": {"symbols": symbols}})
        if tuple(cfg.head.symbols) != symbols:
            raise ValueError(f"head.symbols {cfg.head.symbols} differ from the data's dictionary {symbols}")
        return cfg

    @staticmethod
    def build_model(cfg, encoder, data) -> CtcModel:
        return CtcModel(encoder, cfg.head)

    @staticmethod
    def evaluate(model, loader, device, cfg) -> dict:
        return evaluate(model, loader, device, model.tokens)

    @staticmethod
    def eval_data(cfg: AsrFinetuneConfig, data_dir: str, subset: str):
        """Loader over DIR/<subset>.tsv + .ltr (+ .wrd) with the model's own letters (``data2vec evaluate``)."""
        manifest = Path(data_dir) / f"{subset}.tsv"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} not found (--data DIR --subset NAME reads DIR/NAME.tsv)")
        conv = parse_conv_layers(conv_spec(cfg.encoder))
        fl = lambda n: conv_frame_lengths(n, conv)  # noqa: E731
        ds = LabelledAudio(manifest, cfg.data.labels, LetterDictionary(list(cfg.head.symbols)), cfg.data, fl,
                           cfg.train.seed)
        collate = AsrCollator(frame_lengths=fl, head=cfg.head, channels=cfg.encoder.embed_dim,
                              seed=cfg.train.seed, train=False)
        return split_loader(ds, collate, cfg.data.max_tokens, cfg.train.seed, num_workers=0)


TASK = _AsrTask()
