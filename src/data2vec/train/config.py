"""The pretraining config: one typed dataclass tree, resolved to JSON in the run directory.

``encoder``, ``masking`` and ``data`` take the modality's own dataclasses (``data2vec.modalities``);
``model`` is the modality-agnostic method (EMA, targets, loss, collapse guard, head).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from data2vec.config import from_dict, modality_name
from data2vec.core.data2vec import Data2Vec, Data2VecConfig
from data2vec.errors import Data2VecError
from data2vec.modalities import get_modality
from data2vec.modalities.audio.encoder import parse_conv_layers
from data2vec.train.optim import OptimConfig


@dataclass(kw_only=True)
class TrainConfig:
    max_update: int = 400000  # optimizer updates (fairseq optimization.max_update)
    update_freq: int = 1  # gradient accumulation: micro-batches per update
    seed: int = 1
    device: str = "auto"  # auto = cuda if available, else cpu
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 autocast on CUDA and CPUs with native bf16
    log_interval: int = 10  # updates between metric records
    save_interval_updates: int = 1000  # updates between checkpoints (and one at the end)
    keep_interval_checkpoints: bool = False  # also keep a copy checkpoint_<step>.pt at every save interval
    threads: int = 0  # torch intra-op threads on CPU (0 = torch default)
    init_from: str = ""  # start from these weights (HF dir, fairseq .pt, our checkpoint or converted dir)
    # ddp: replicated student (DistributedDataParallel), single-file checkpoints; fsdp: FSDP2 per Transformer block
    # (student and EMA teacher sharded, bf16 params/reduce with train.precision bf16), DCP checkpoint directories
    parallel: Literal["ddp", "fsdp"] = "ddp"
    # torch.compile in place what the task's compile_targets() names (pretraining: student and teacher Transformer
    # stacks and the speech CNN; fine-tuning: the encoder's Transformer stack); measured in docs/benchmarks.md; off by
    # default (about 30 s of compilation on this CPU for the tiny presets, recompiles on new shapes)
    compile: bool = False

    def __post_init__(self):
        # max_update 0 is a task's "derive it" marker (text fine-tuning: max_epochs); runs check >= 1 at start
        for name, least in (("update_freq", 1), ("log_interval", 1), ("save_interval_updates", 1), ("threads", 0),
                            ("max_update", 0)):
            if getattr(self, name) < least:
                raise Data2VecError(f"train.{name} must be >= {least}, got {getattr(self, name)}")


@dataclass(kw_only=True)
class PretrainConfig:
    modality: str
    version: int = 1  # data2vec 1.0 or 2.0 (picks the classes of encoder and masking)
    preset: str = ""  # name of the preset this config started from
    encoder: Any
    masking: Any
    data: Any
    model: Data2VecConfig = field(default_factory=Data2VecConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        self.modality = modality_name(self.modality)  # configs and checkpoints written as `vision` read as `image`
        # every way a config is made (preset, file, --set, an imported HF/fairseq config) is checked before a model
        # of it is allocated
        if dataclasses.is_dataclass(self.encoder):
            check_model_size(self.encoder, self.model)


def pretrain_config_from_dict(d: dict) -> PretrainConfig:
    """Rebuild a PretrainConfig from its JSON form (the modality picks the section classes)."""
    if not isinstance(d, dict):
        raise Data2VecError(f"a config must be a JSON object (mapping), got {type(d).__name__}")
    if "modality" not in d:
        raise Data2VecError("config has no 'modality' (audio, text or image)")
    spec = get_modality(d["modality"])
    known = {"modality", "version", "preset", "encoder", "masking", "data", "model", "optim", "train"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise Data2VecError(f"unknown config key(s) {unknown}; valid: {sorted(known)}")
    version = d.get("version", 1)
    encoder_cls, mask_cls = spec.configs(version)
    for k in ("encoder", "masking", "data", "model", "optim", "train"):
        if not isinstance(d.get(k, {}), dict):
            raise Data2VecError(f"{k}: expected a mapping, got {d[k]!r}")
    return PretrainConfig(
        modality=d["modality"],
        version=version,
        preset=d.get("preset", ""),
        encoder=from_dict(encoder_cls, d.get("encoder", {}), "encoder."),
        masking=from_dict(mask_cls, d.get("masking", {}), "masking."),
        data=from_dict(spec.data_config, d.get("data", {}), "data."),
        model=from_dict(Data2VecConfig, d.get("model", {}), "model."),
        optim=from_dict(OptimConfig, d.get("optim", {}), "optim."),
        train=from_dict(TrainConfig, d.get("train", {}), "train."),
    )


# Encoder sizes that must be >= 1 (every other integer field of an encoder config must be >= 0).
_POSITIVE = {"embed_dim", "depth", "num_heads", "ffn_embed_dim", "image_size", "patch_size", "in_chans",
             "max_positions", "conv_pos_groups", "decoder_dim", "decoder_groups"}
MAX_BLOCKS = 4096  # Transformer blocks + conv layers; the largest published data2vec has 24 + 7


def _ints(section, prefix: str):
    for f in dataclasses.fields(section):
        v = getattr(section, f.name)
        if isinstance(v, int) and not isinstance(v, bool):
            yield prefix + f.name, f.name, v


def estimate_parameters(enc, model: Data2VecConfig | None = None) -> tuple[int, int]:
    """(parameters, blocks) a model of this encoder (and data2vec head/decoder) config will have, from the config
    alone (nothing is built); within ~10% of the real count for the presets, enough to refuse absurd sizes."""
    def get(*names, default=0):
        return next((getattr(enc, n) for n in names if hasattr(enc, n)), default)

    d = get("embed_dim")
    layers = get("depth") + get("prenet_depth")
    ffn = get("ffn_embed_dim", default=0) or int(d * float(get("mlp_ratio", default=4.0)))
    n = layers * (4 * d * d + 2 * d * ffn + 9 * d + ffn)  # attention, MLP, norms and biases
    blocks = layers
    spec = get("conv_feature_layers", default="")
    if spec:
        c_in, conv = 1, parse_conv_layers(spec)
        if get("extractor_mode", default="") == "log_mel":  # the first "layer" is the fixed mel filterbank
            c_in, conv = conv[0][0], conv[1:]
        for dim, k, _ in conv:
            n += c_in * dim * k + 2 * dim
            c_in = dim
        n += c_in * d
        blocks += len(parse_conv_layers(spec))
    groups = get("conv_pos_groups")
    if groups:  # positional convolution(s)
        width, depth = get("conv_pos_width"), get("conv_pos_depth", default=1)
        depth = max(depth, 1)
        n += d * (d // groups) * max(3, width // depth) * depth
    n += (get("vocab_size") + get("max_positions")) * d
    if get("patch_size"):
        n += get("in_chans") * get("patch_size") ** 2 * d + (get("image_size") // get("patch_size") + 1) ** 2 * d
    dec = getattr(model, "decoder", None)
    if dec is not None:
        n += dec.decoder_layers * dec.decoder_dim * (dec.decoder_dim // max(dec.decoder_groups, 1)) \
            * dec.decoder_kernel + 2 * d * dec.decoder_dim
        blocks += dec.decoder_layers
    elif model is not None:
        n += model.head_layers * 2 * d * d
    return n, blocks


def _human_bytes(n: float) -> str:
    unit, scale = next((u, s) for u, s in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20))
                       if n >= s or u == "MiB")
    value = n / scale
    return f"{value:,.1f} {unit}" if value < 1e6 else f"{value:.2g} {unit}"


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no limit known
        return 0


def check_model_size(enc, model: Data2VecConfig | None = None, prefix: str = "encoder.") -> None:
    """Refuse, before anything is allocated, an encoder config with negative or zero sizes, or one so large that
    its weights alone would not fit in this machine's memory (the message gives the estimate)."""
    sections = [(enc, prefix)]
    if getattr(model, "decoder", None) is not None:
        sections.append((model.decoder, "model.decoder."))
    for section, pre in sections:
        for key, name, v in _ints(section, pre):
            if v < 0 or (v == 0 and name in _POSITIVE):
                raise Data2VecError(f"{key} must be {'>= 1' if name in _POSITIVE else '>= 0'}, got {v}")
    if float(getattr(enc, "mlp_ratio", 1.0)) <= 0:
        raise Data2VecError(f"{prefix}mlp_ratio must be > 0, got {enc.mlp_ratio}")
    n, blocks = estimate_parameters(enc, model)
    weights = 2 * 4 * n  # fp32 student + EMA teacher
    memory = _memory_bytes()
    if blocks > MAX_BLOCKS or (memory and weights > memory):
        why = (f"{blocks:,} blocks (at most {MAX_BLOCKS:,})" if blocks > MAX_BLOCKS else
               f"more than this machine's {_human_bytes(memory)} of memory")
        raise Data2VecError(
            f"the {prefix.rstrip('.')} config describes about {n:.3g} parameters, {_human_bytes(weights)} for the "
            f"student and teacher weights alone (training needs ~2.5x that): {why}; check the sizes under "
            f"{prefix.rstrip('.')} (width, layers, conv spec)")


def build_model(cfg: PretrainConfig) -> Data2Vec:
    """The ``Data2Vec`` model (student + EMA teacher) that ``cfg`` describes, freshly initialised."""
    return Data2Vec(get_modality(cfg.modality).build_encoder(cfg.encoder), cfg.model)
