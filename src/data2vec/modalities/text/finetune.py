"""Sentence (pair) classification and regression on a data2vec text encoder (GLUE, SPEC B.3).

logits = out_proj(dropout(tanh(dense(dropout(h_<s>))))): RoBERTa's classification head (fairseq and HF
``RobertaClassificationHead``, modules ``classifier.dense`` / ``classifier.out_proj``, so a HF
``Data2VecTextForSequenceClassification`` maps onto it by a key rename) on the final state of the first
token ``<s>`` (``head.pool=mean``, our addition: on the mean over the non-pad tokens). Cross-entropy for
classification, mean squared error for regression (``num_classes = 1``, STS-B). Inputs are encoded as RoBERTa
does: ``<s> A </s>`` or ``<s> A </s></s> B </s>``, truncated to ``data.max_positions`` tokens by cutting the
longer text first (HF ``longest_first``).

Data: GLUE-format TSV files (``data2vec.data.glue``) in ``--data DIR``; the tokenizer is the pretraining
one (``data.tokenizer``, by default the pretraining data directory, else ``DIR`` or the ``--init``
directory when they hold ``vocab.json`` + ``merges.txt``). Batches hold ``data.batch_size`` sentences
(fairseq ``max_sentences``) of similar lengths: fairseq's ``sentence_prediction`` task sorts by length and
packs with ``batch_by_size`` too (``data2vec.data.sampler.BucketBatchSampler``), which keeps padding low;
``data.max_tokens`` can cap tokens per batch as well. Padding does not change an example's logits.

Recipes (``--recipe NAME``): the GLUE tasks of fairseq's v2 ``text_finetuning/*.yaml`` (``cola``, ``mnli``,
``mrpc``, ``qnli``, ``qqp``, ``rte``, ``sst-2``, ``sts-b``): Adam (0.9, 0.98), eps 1e-6, weight decay 0.1,
10 epochs, 6 % warm-up then linear decay to 0 (fairseq ``polynomial_decay``), no clipping, pooler
dropout 0, batch 16 (CoLA, MRPC, RTE, STS-B) or 32, lr 2e-5 (STS-B 4e-5); each also sets
``data.glue_task`` (the file layout and GLUE's score). ``base`` is the same for one's own files;
``tiny`` (lr 1e-4) is for the tiny CPU presets. Default: ``tiny`` for encoders narrower than 512, else
``base``.

``train.max_update = 0`` means ``max_epochs`` epochs, ``warmup_ratio`` sets ``optim.warmup_updates`` and
``eval_interval = 0`` validates once per epoch; all three are resolved from the data before training and
written to ``config.json``. Validation reports ``score`` (GLUE's measure of the task: accuracy; MCC for
CoLA; F1 of class 1 for MRPC and QQP; the mean of Pearson and Spearman for STS-B and regression) and the
other metrics; the best ``score`` is kept.

data2vec 2.0 encoders (fairseq ``data2vec_text_classification.py`` on a ``data2vec_multi`` checkpoint): the same
head on the output of the first token after the encoder's extra tokens (``<s>``; the text encoders have none),
with the pretraining dropouts kept as fairseq keeps them; ``head.layer_decay`` decays over the blocks only
(``data2vec.finetune.loop.layer_decay_param_groups``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data2vec.config import merge
from data2vec.core.data2vec import StepLoss
from data2vec.data.glue import GlueFile, get_format, label_vocabulary, read_tsv, split_file
from data2vec.data.sampler import BucketBatchSampler, ListBatchSampler, build_loader
from data2vec.data.text import Tokenizer
from data2vec.finetune import metrics as M
from data2vec.finetune.loop import FinetuneBase, FinetuneModel, label_subset, layer_decay_param_groups
from data2vec.layers.transformer import init_bert_params
from data2vec.modalities.text import TextEncoderConfig
from data2vec.modalities.text.encoder_v2 import TextEncoderV2Config
from data2vec.train.config import TrainConfig
from data2vec.train.optim import OptimConfig

ScoreName = Literal["", "accuracy", "f1", "macro_f1", "mcc", "pearson", "spearman", "pearson_spearman"]


@dataclass(kw_only=True)
class TextHeadConfig:
    num_classes: int = 0  # 0 = from the data (number of training labels; 1 for regression); 1 = regression
    labels: tuple[str, ...] = ()  # class names in id order (() = the sorted training labels)
    pooler_dropout: float = 0.0  # dropout before dense and before out_proj (fairseq v2 GLUE: 0)
    layer_decay: float = 1.0  # lr of layer l = lr * layer_decay ** (depth + 1 - l); 1 = off
    # "first": the final state of <s> (RoBERTa / fairseq / HF); "mean": the mean of the final states of every
    # non-pad token (<s> and </s> included), our addition: data2vec regresses per-token targets, so every token's
    # state is trained, while nothing trains <s> to summarise the sentence. A "mean" model cannot be exported to HF.
    pool: Literal["first", "mean"] = "first"


class ClassificationHead(nn.Module):
    """RoBERTa's sentence classification head (fairseq / HF ``RobertaClassificationHead``)."""

    def __init__(self, dim: int, num_outputs: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(dim, num_outputs)

    def forward(self, x_BC: torch.Tensor) -> torch.Tensor:
        x_BC = torch.tanh(self.dense(self.dropout(x_BC)))
        return self.out_proj(self.dropout(x_BC))


class TextClassifier(FinetuneModel):
    units_name = "sentences"

    def __init__(self, encoder: nn.Module, cfg: TextHeadConfig):
        super().__init__()
        if cfg.num_classes < 1:
            raise ValueError(f"head.num_classes must be >= 1 (1 = regression), got {cfg.num_classes}")
        self.cfg = cfg
        self.encoder = encoder
        self.regression = cfg.num_classes == 1
        self.log_keys = () if self.regression else ("acc",)
        if cfg.pool not in ("first", "mean"):
            raise ValueError(f"head.pool must be 'first' or 'mean', got {cfg.pool!r}")
        self.classifier = ClassificationHead(encoder.embed_dim, cfg.num_classes, cfg.pooler_dropout)
        self.classifier.apply(init_bert_params)

    def forward(self, tokens_BT: torch.Tensor) -> torch.Tensor:
        """[B, T] token ids (right-padded with the encoder's pad id) -> [B, num_classes] logits."""
        out = self.encoder(tokens_BT)
        if self.cfg.pool == "mean":
            keep_BT1 = (tokens_BT != self.encoder.cfg.pad).unsqueeze(-1).to(out.x.dtype)
            return self.classifier((out.x[:, out.num_extra:] * keep_BT1).sum(1) / keep_BT1.sum(1))
        return self.classifier(out.x[:, out.num_extra])  # v2: extra tokens come first

    # ---- training-task interface (the rest: FinetuneModel) ---------------------------------
    def step_loss(self, batch: dict, wrapped: nn.Module) -> StepLoss:
        logits, y = wrapped(batch["source"]).float(), batch["labels"]
        if self.regression:
            return StepLoss(F.mse_loss(logits[:, 0], y.float(), reduction="sum"), int(y.numel()), {})
        loss = F.cross_entropy(logits, y, reduction="sum")
        return StepLoss(loss, int(y.numel()), {"acc": (logits.argmax(-1) == y).float().mean().item()})

    def optim_param_groups(self, weight_decay: float, no_decay_1d: bool) -> list[dict]:
        """AdamW groups: no weight decay on 1-D parameters; ``lr_scale`` for layer-wise decay (v1: embeddings 0,
        block i -> i + 1, head depth + 1; v2: the blocks only)."""
        return layer_decay_param_groups(self, weight_decay, no_decay_1d, self.cfg.layer_decay)


# ---- inputs ------------------------------------------------------------------------------------
def truncate_pair(a: list[int], b: list[int] | None, budget: int) -> tuple[list[int], list[int] | None]:
    """Cut tokens off the end of the longer text (of ``b`` on a tie) until both fit in ``budget``."""
    if b is None:
        return a[:budget], None
    la, lb = len(a), len(b)
    excess = la + lb - budget
    if excess > 0:
        d = min(excess, abs(la - lb))  # first even them out, then take from both (b first on odd counts)
        la, lb = (la - d, lb) if la > lb else (la, lb - d)
        rest = excess - d
        la, lb = la - rest // 2, lb - (rest - rest // 2)
    return a[:max(la, 0)], b[:max(lb, 0)]


def encode_example(a: list[int], b: list[int] | None, *, bos: int, eos: int, max_len: int) -> np.ndarray:
    """``<s> A </s>`` or ``<s> A </s></s> B </s>`` in at most ``max_len`` tokens."""
    budget = max_len - (2 if b is None else 4)
    if budget < 1:
        raise ValueError(f"data.max_positions={max_len} leaves no room for the text")
    a, b = truncate_pair(a, b, budget)
    ids = [bos, *a, eos] if b is None else [bos, *a, eos, eos, *b, eos]
    return np.asarray(ids, dtype=np.int64)


class TextPairDataset(torch.utils.data.Dataset):
    """Encoded examples and their targets (class ids, or floats for regression)."""

    def __init__(self, tokens: list[np.ndarray], targets: np.ndarray):
        self.tokens, self.targets = tokens, targets
        self.sizes = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict:
        return {"id": i, "tokens": self.tokens[i], "label": self.targets[i]}


@dataclass
class Collator:
    pad: int
    regression: bool

    def __call__(self, samples: list[dict]) -> dict:
        B, T = len(samples), max(len(s["tokens"]) for s in samples)
        source = torch.full((B, T), self.pad, dtype=torch.long)
        for i, s in enumerate(samples):
            source[i, : len(s["tokens"])] = torch.from_numpy(s["tokens"])
        dtype = torch.float32 if self.regression else torch.long
        return {"source": source, "labels": torch.tensor([s["label"] for s in samples], dtype=dtype),
                "indices": torch.tensor([s["id"] for s in samples])}


def encode_file(f: GlueFile, tok, max_len: int, labels: tuple[str, ...] | None) -> TextPairDataset:
    """Tokenize a labelled file; ``labels`` None = regression (float targets)."""
    a_ids = tok.encode_batch([e.text_a for e in f.examples])
    has_b = f.examples[0].text_b is not None
    b_ids = tok.encode_batch([e.text_b or "" for e in f.examples]) if has_b else [None] * len(a_ids)
    tokens = [encode_example(a, b, bos=tok.bos, eos=tok.eos, max_len=max_len) for a, b in zip(a_ids, b_ids)]
    return TextPairDataset(tokens, _targets(f, labels))


def _targets(f: GlueFile, labels: tuple[str, ...] | None) -> np.ndarray:
    if labels is None:
        out = np.empty(len(f.examples), dtype=np.float32)
        for i, e in enumerate(f.examples):
            try:
                out[i] = float(e.label)
            except ValueError:
                raise ValueError(f"{f.path}:{e.line}: regression label {e.label!r} is not a number") from None
        return out
    ids = {name: i for i, name in enumerate(labels)}
    out = np.empty(len(f.examples), dtype=np.int64)
    for i, e in enumerate(f.examples):
        if e.label not in ids:
            raise ValueError(f"{f.path}:{e.line}: label {e.label!r} is not one of the model's labels {list(labels)}")
        out[i] = ids[e.label]
    return out


def length_batches(sizes: np.ndarray, batch_size: int, max_tokens: int = 0) -> list[list[int]]:
    """Deterministic evaluation batches: longest first, ``batch_size`` sentences (and ``max_tokens``)."""
    out, cur = [], []
    for i in np.argsort(-sizes, kind="stable").tolist():
        if cur and (len(cur) >= batch_size or (max_tokens and (len(cur) + 1) * int(sizes[cur[0]]) > max_tokens)):
            out.append(cur)
            cur = []
        cur.append(i)
    return out + [cur] if cur else out


# ---- evaluation ----------------------------------------------------------------------------------
def score_name(cfg) -> str:
    """The task's main metric: ``score_metric`` if set, else GLUE's for ``data.glue_task``, else accuracy
    (mean of Pearson and Spearman for regression)."""
    if cfg.score_metric:
        return cfg.score_metric
    fmt = get_format(cfg.data.glue_task)
    if fmt is not None and (fmt.regression == (cfg.head.num_classes == 1)):
        return fmt.metric
    return "pearson_spearman" if cfg.head.num_classes == 1 else "accuracy"


@torch.no_grad()
def evaluate(model: TextClassifier, loader, device: torch.device, cfg) -> dict:
    """``score`` (the task's main metric, named by ``score_name``) and the others, mean loss, examples."""
    model.eval()
    preds, golds = [], []
    loss = 0.0
    for batch in loader:
        x, y = batch["source"].to(device), batch["labels"].to(device)
        logits = model(x).float()
        if model.regression:
            loss += F.mse_loss(logits[:, 0], y.float(), reduction="sum").item()
            preds.append(logits[:, 0].cpu())
        else:
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            preds.append(logits.argmax(-1).cpu())
        golds.append(y.cpu())
    n = sum(len(g) for g in golds)
    if n == 0:
        return {"score": 0.0, "loss": 0.0, "examples": 0}
    p, g = torch.cat(preds).numpy(), torch.cat(golds).numpy()
    if model.regression:
        out = M.regression_metrics(p, g)
    else:
        out = M.classification_metrics(p, g, model.cfg.num_classes)
    name = score_name(cfg)
    if name not in out:
        raise ValueError(f"score_metric={name!r} is not measured for this task; measured: {sorted(out)}")
    return {"score": out[name], **out, "loss": loss / n, "examples": n, "score_metric": name}


# ---- the fine-tuning task (data2vec.finetune.loop) ------------------------------------------------
@dataclass(kw_only=True)
class TextFinetuneDataConfig:
    path: str = ""  # DIR with GLUE-format train.tsv, dev.tsv (validation) and test.tsv
    glue_task: str = ""  # file layout: cola, sst-2, mrpc, qqp, sts-b, mnli, mnli-mm, qnli, rte, wnli; "" = by header
    regression: bool = False  # labels are numbers (STS-B is always regression)
    tokenizer: str = ""  # directory with vocab.json + merges.txt ("" = pretraining data, DIR or --init dir)
    max_positions: int = 0  # tokens per example incl. <s>/</s> (0 = encoder.max_positions: 512 for HF's 514)
    batch_size: int = 32  # sentences per batch (fairseq max_sentences)
    max_tokens: int = 0  # also cap batch size x longest example (0 = no cap)
    label_fraction: float = 1.0  # fraction of the training labels used (per class, seeded)
    max_train_examples: int = 0  # at most this many training examples (per class, seeded; 0 = all)
    num_workers: int = 0


@dataclass(kw_only=True)
class TextFinetuneConfig(FinetuneBase):
    task: Literal["text-classification"] = "text-classification"
    recipe: str = ""
    encoder: TextEncoderConfig | TextEncoderV2Config
    head: TextHeadConfig = field(default_factory=TextHeadConfig)
    data: TextFinetuneDataConfig = field(default_factory=TextFinetuneDataConfig)
    max_epochs: float = 10.0  # with train.max_update = 0: train this many epochs
    warmup_ratio: float = 0.06  # > 0: optim.warmup_updates = warmup_ratio x train.max_update
    score_metric: ScoreName = ""  # "" = by task (see score_name)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        optimizer="adamw", lr=2e-5, adam_betas=(0.9, 0.98), adam_eps=1e-6, weight_decay=0.1,
        lr_scheduler="polynomial", power=1.0, warmup_updates=0, min_lr=0.0, clip_norm=0.0))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_update=0, log_interval=50,
                                                                   save_interval_updates=1000))


# SPEC B.3 (fairseq examples/data2vec/config/v2/text_finetuning/*.yaml): recipe -> (batch size, lr)
GLUE_RECIPES = {"cola": (16, 2e-5), "mnli": (32, 2e-5), "mrpc": (16, 2e-5), "qnli": (32, 2e-5),
                "qqp": (32, 2e-5), "rte": (16, 2e-5), "sst-2": (32, 2e-5), "sts-b": (16, 4e-5)}
RECIPES = (*GLUE_RECIPES, "base", "tiny")


def recipe_config(src, init: str, recipe: str | None = None) -> TextFinetuneConfig:
    """The fine-tuning config for an encoder pretrained with ``src`` (a pretraining config)."""
    recipe = recipe or ("tiny" if src.encoder.embed_dim < 512 else "base")
    if recipe not in RECIPES:
        raise ValueError(f"unknown text-classification recipe {recipe!r}; available: {', '.join(RECIPES)}")
    batch, lr = GLUE_RECIPES.get(recipe, (32, 1e-4 if recipe == "tiny" else 2e-5))
    data = TextFinetuneDataConfig(glue_task=recipe if recipe in GLUE_RECIPES else "", batch_size=batch,
                                  tokenizer=recipe_tokenizer(src, init))
    cfg = TextFinetuneConfig(init=init, recipe=recipe, encoder=src.encoder, data=data, eval_interval=0)
    cfg.optim = replace(cfg.optim, lr=lr)
    if recipe == "tiny":
        cfg.train = replace(cfg.train, log_interval=10, save_interval_updates=200)
    return cfg


def _has_tokenizer(d: Path) -> bool:
    return (d / "vocab.json").is_file() and (d / "merges.txt").is_file()


def recipe_tokenizer(src, init: str) -> str:
    """The tokenizer a recipe fine-tunes with: that of the ``--init`` model directory when it carries one (a shipped
    model: ``models/text-tiny-v2``), else the pretraining data's (``data.path`` of its config) when that is on this
    machine, else "" (looked up in DIR at run time)."""
    if init and Path(init).is_dir() and _has_tokenizer(Path(init)):
        return str(init)
    pre = getattr(src.data, "path", "") or ""
    return pre if pre and _has_tokenizer(Path(pre)) else ""


def tokenizer_dir(cfg) -> Path:
    """``data.tokenizer``, else the first of DIR and the ``--init`` directory holding vocab.json + merges.txt."""
    if cfg.data.tokenizer:
        return Path(cfg.data.tokenizer)
    looked = [Path(cfg.data.path)] if cfg.data.path else []
    if cfg.init:
        p = Path(cfg.init)
        looked.append(p if p.is_dir() else p.parent)
    for d in looked:
        if _has_tokenizer(d):
            return d
    raise ValueError("no tokenizer: set data.tokenizer=DIR, a directory with vocab.json + merges.txt (the "
                     "pretraining data of `data2vec prepare text`, or a RoBERTa tokenizer); looked in "
                     f"{', '.join(map(str, looked)) or 'nothing'}")


class TextFinetuneData:
    def __init__(self, cfg: TextFinetuneConfig, dist, seed: int):
        d = cfg.data
        root = Path(d.path)
        fmt = get_format(d.glue_task)
        if not d.path or not (root / "train.tsv").is_file():
            raise ValueError("--data must be a directory with GLUE-format train.tsv, dev.tsv and test.tsv "
                             "(e.g. `data2vec prepare rt-polarity --out DIR`)")
        self.tokenizer_dir = tokenizer_dir(cfg)
        self.tokenizer = tok = Tokenizer(self.tokenizer_dir)
        self.regression = d.regression or (fmt is not None and fmt.regression) or cfg.head.num_classes == 1
        max_len = d.max_positions or cfg.encoder.max_positions
        if max_len > cfg.encoder.max_positions:
            raise ValueError(f"data.max_positions={max_len} exceeds encoder.max_positions={cfg.encoder.max_positions}")
        files = {s: read_tsv(root / split_file(fmt, s), fmt) for s in ("train", "valid", "test")
                 if (root / split_file(fmt, s)).is_file()}
        train = files["train"]
        if not train.labelled:
            raise ValueError(f"{train.path} has no label column")
        self.labels = None if self.regression else (cfg.head.labels or label_vocabulary(e.label for e in train.examples))
        self.train = encode_file(train, tok, max_len, self.labels)
        self.n_available = len(self.train)
        keep = train_subset(self.train.targets, d.label_fraction, d.max_train_examples, seed, self.regression)
        self.train = TextPairDataset([self.train.tokens[i] for i in keep], self.train.targets[keep])
        self.notes = [f.describe() for f in files.values()]
        self.sets = {}
        for name in ("valid", "test") if cfg.validate else ("test",):
            if name not in files:
                self.notes.append(f"no {split_file(fmt, name)}: no {'validation' if name == 'valid' else 'test'}")
            elif not files[name].labelled:
                self.notes.append(f"{files[name].path.name} has no labels (a GLUE test set?): no {name} evaluation")
            else:
                self.sets[name] = encode_file(files[name], tok, max_len, self.labels)
        self.collate = Collator(tok.pad, self.regression)
        self.batch_size, self.max_tokens, self.num_workers = d.batch_size, d.max_tokens, d.num_workers
        self.label_fraction, self.max_len = d.label_fraction, max_len
        self.sampler = BucketBatchSampler(self.train.sizes, max_tokens=d.max_tokens or d.batch_size * max_len,
                                          max_sentences=d.batch_size, seed=seed, num_replicas=dist.world_size,
                                          rank=dist.rank)

    def describe(self) -> str:
        kind = "regression" if self.regression else f"{len(self.labels)} classes {list(self.labels)}"
        share = "all" if len(self.train) == self.n_available else f"{len(self.train) / self.n_available:.1%}"
        return (f"{len(self.train):,} labelled training examples ({share} of {self.n_available:,}), {kind}, "
                f"<= {self.max_len} tokens; " + "; ".join(self.notes))

    def make_loader(self, epoch: int, start_batch: int = 0):
        return build_loader(self.train, self.sampler, self.collate, num_workers=self.num_workers, epoch=epoch,
                            start_batch=start_batch)

    def eval_loader(self, name: str):
        return _eval_loader(self.sets[name], self.collate, self.batch_size, self.max_tokens, self.num_workers)


def _eval_loader(ds: TextPairDataset, collate, batch_size: int, max_tokens: int, num_workers: int = 0):
    return torch.utils.data.DataLoader(ds, batch_sampler=ListBatchSampler(length_batches(ds.sizes, batch_size, max_tokens)),
                                       collate_fn=collate, num_workers=num_workers)


def train_subset(targets: np.ndarray, fraction: float, max_examples: int, seed: int, regression: bool) -> list[int]:
    """Seeded subset: ``fraction`` of each class, at most ``max_examples`` in all (regression: of all)."""
    n = len(targets)
    if max_examples > 0:
        fraction = min(fraction, max_examples / n)
    if fraction >= 1.0:
        return list(range(n))
    if regression:
        if fraction <= 0:
            raise ValueError(f"data.label_fraction must be in (0, 1], got {fraction}")
        return sorted(np.random.default_rng([seed, 11]).permutation(n)[: max(1, round(n * fraction))].tolist())
    keep = label_subset(targets, fraction, seed)
    if max_examples > 0 and len(keep) > max_examples:  # rounding per class can overshoot by a few
        keep = sorted(np.random.default_rng([seed, 12]).permutation(keep)[:max_examples].tolist())
    return keep


class _TextTask:
    name = "text-classification"
    modality = "text"
    config_cls = TextFinetuneConfig
    metric = "score"
    higher_is_better = True
    recipes = RECIPES

    @staticmethod
    def default_config(src, init: str = "", recipe: str | None = None) -> TextFinetuneConfig:
        return recipe_config(src, init, recipe)

    build_data = TextFinetuneData

    @staticmethod
    def complete_config(cfg: TextFinetuneConfig, data: TextFinetuneData) -> TextFinetuneConfig:
        """Vocabulary, classes, labels and tokenizer from the data; epochs -> updates; warm-up; eval interval."""
        V = data.tokenizer.vocab_size
        if cfg.encoder.vocab_size == 0:
            cfg = merge(cfg, {"encoder": {"vocab_size": V}})
        elif cfg.encoder.vocab_size != V:
            raise ValueError(f"the tokenizer in {data.tokenizer_dir} has {V} tokens but the encoder's vocabulary "
                             f"has {cfg.encoder.vocab_size}: fine-tune with the tokenizer the encoder was "
                             "pretrained with (data.tokenizer=DIR)")
        if data.regression:
            if cfg.head.num_classes not in (0, 1):
                raise ValueError(f"regression data needs head.num_classes=1 (or 0), got {cfg.head.num_classes}")
            head = {"num_classes": 1, "labels": ()}
        else:
            n = len(data.labels)
            if n < 2:
                raise ValueError(f"train.tsv has a single label {list(data.labels)}: nothing to classify")
            if cfg.head.num_classes not in (0, n):
                raise ValueError(f"head.num_classes={cfg.head.num_classes} but the data has {n} labels "
                                 f"{list(data.labels)}")
            head = {"num_classes": n, "labels": data.labels}
        per_epoch = max(1, math.ceil(len(data.sampler) / cfg.train.update_freq))
        max_update = cfg.train.max_update or max(1, math.ceil(cfg.max_epochs * per_epoch))
        changes = {"head": head, "data": {"tokenizer": str(data.tokenizer_dir)}, "train": {"max_update": max_update},
                   "eval_interval": cfg.eval_interval or per_epoch}
        if cfg.warmup_ratio > 0:
            changes["optim"] = {"warmup_updates": round(cfg.warmup_ratio * max_update)}
        return merge(cfg, changes)

    @staticmethod
    def build_model(cfg, encoder, data) -> TextClassifier:
        return TextClassifier(encoder, cfg.head)

    @staticmethod
    def evaluate(model, loader, device, cfg) -> dict:
        return evaluate(model, loader, device, cfg)

    @staticmethod
    def eval_data(cfg: TextFinetuneConfig, data_dir: str, subset: str):
        """Loader over DIR/<subset file> (``data2vec evaluate``): test -> test.tsv, valid -> dev.tsv (MNLI
        dev_matched.tsv), NAME -> NAME.tsv; labels and tokenizer as in training."""
        fmt = get_format(cfg.data.glue_task)
        path = Path(data_dir) / split_file(fmt, "valid" if subset == "dev" else subset)
        f = read_tsv(path, fmt)
        if not f.labelled:
            raise ValueError(f"{path} has no labels: nothing to evaluate against")
        tok = Tokenizer(tokenizer_dir(replace(cfg, data=replace(cfg.data, path=str(data_dir)))))
        regression = cfg.head.num_classes == 1
        labels = None if regression else (cfg.head.labels or label_vocabulary(e.label for e in f.examples))
        if labels is not None and len(labels) != cfg.head.num_classes:
            raise ValueError(f"{path} has {len(labels)} labels, the model {cfg.head.num_classes}")
        ds = encode_file(f, tok, cfg.data.max_positions or cfg.encoder.max_positions, labels)
        return _eval_loader(ds, Collator(tok.pad, regression), cfg.data.batch_size, cfg.data.max_tokens)


TASK = _TextTask()
