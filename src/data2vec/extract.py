"""Feature extraction from a pretrained model, for audio files, images and text lines (each modality's
``extract.py`` turns its inputs into batches; this module is the same for all).

    data2vec extract models/tiny a.wav b.flac --layer all --out feats.safetensors
    data2vec extract models/text --text-file lines.txt --layer 4 --pool mean --out feats.npy

Layers: ``final`` (the encoder output, after the image encoder's final LayerNorm), ``N`` (end of block N,
1-based) or ``all`` (every block, stacked). Per-frame/per-token outputs by default; ``--pool mean``
averages over valid positions. ``.safetensors`` holds one tensor per input (``0``, ``1``, ...; variable
lengths allowed); ``.npy`` needs equal shapes (pooled features, or images).

Batching never changes the numbers: text is padded (padding is masked out of attention, so a padded
batch equals one-by-one, tested), images have one size. data2vec 1.0 audio goes one file at a time,
because the stacked positional convolution of the speech encoder sees padding near the end of a shorter
clip (fairseq and HF behave the same); data2vec 2.0 audio with the layer-norm CNN is batched (its
positional conv zeroes padded frames before every layer, so a padded batch equals one-by-one, tested).

data2vec 2.0 models: ``final`` and block ``N`` are the shared blocks' outputs without the extra tokens (the
image CLS token), so their shapes match v1's (one vector per frame, token or patch); v2 has no final
LayerNorm, so ``final`` is the last block's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data2vec.modalities import get_modality
from data2vec.pretrained import load_pretrained
from data2vec.safe_load import write_safetensors


def _select(out, layer: str, valid: torch.Tensor | None, pool: str) -> list[torch.Tensor]:
    if layer == "final":
        x = out.x[:, out.num_extra:][:, None]  # v2: extra tokens (CLS) come first
    elif layer == "all":
        x = torch.stack(out.layer_outputs, dim=1)
    else:
        n = int(layer)
        if not 1 <= n <= len(out.layer_outputs):
            raise ValueError(f"--layer {n}: the model has {len(out.layer_outputs)} layers")
        x = out.layer_outputs[n - 1][:, None]
    feats = []
    for b in range(x.size(0)):
        f = x[b] if valid is None else x[b][:, valid[b]]  # [L, T, C]
        f = f.mean(dim=1) if pool == "mean" else f
        feats.append(f[0] if layer != "all" else f)
    return feats


@torch.no_grad()
def encode(encoder, source: torch.Tensor, padding_mask: torch.Tensor | None = None):
    """(context-encoder output with every layer, padding mask of the output) of an unmasked batch: what
    ``data2vec extract`` computes (and what benchmarks/side_by_side.py times against HF's forward)."""
    e = encoder.embed(source, padding_mask)
    return encoder.context_encoder(e.x, e.padding_mask), e.padding_mask


class Extractor:
    """A pretrained model's encoder and its modality's input reader (``ModalitySpec.extract_batches``)."""

    def __init__(self, src: str | Path, *, tokenizer: str | Path | None = None, device: str = "cpu"):
        self.cfg, model = load_pretrained(src)
        self.encoder = model.student.encoder.to(device).eval()
        self.device = torch.device(device)
        self.spec = get_modality(self.cfg.modality)
        self.tokenizer = tokenizer

    def features(self, inputs: list[str], layer: str, pool: str, batch_size: int | None = None) -> list[torch.Tensor]:
        """One feature tensor per input (a file path, or a line of text for a text model), in input order."""
        feats: list[torch.Tensor | None] = [None] * len(inputs)
        for idx, x, pad in self.spec.extract_batches(self.cfg, self.encoder, inputs, batch_size, self.tokenizer):
            out, out_pad = encode(self.encoder, x.to(self.device), None if pad is None else pad.to(self.device))
            for i, f in zip(idx, _select(out, layer, None if out_pad is None else ~out_pad, pool)):
                feats[i] = f
        return feats

    # the same, by modality name
    audio = images = text = features


def save_features(feats: list[torch.Tensor], out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        shapes = {tuple(f.shape) for f in feats}
        if len(shapes) != 1:
            raise ValueError(f"features have different shapes {sorted(shapes)[:3]}...: use --pool mean or a "
                             ".safetensors output")
        np.save(out, torch.stack(feats).cpu().numpy())
    elif out.suffix == ".safetensors":
        write_safetensors({str(i): f.contiguous().cpu() for i, f in enumerate(feats)}, out)
    else:
        raise ValueError(f"--out must end in .npy or .safetensors, got {out.name}")
    return out


def add_arguments(p) -> None:
    p.add_argument("model", help="model: our checkpoint/converted directory, a HF directory or a fairseq .pt")
    p.add_argument("inputs", nargs="*", help="audio or image files")
    p.add_argument("--text-file", help="text model: one input per line of this file")
    p.add_argument("--tokenizer", help="text model: directory with vocab.json + merges.txt (default: the model's data)")
    p.add_argument("--layer", default="final", help="final, all, or a block number (1-based)")
    p.add_argument("--pool", choices=["none", "mean"], default="none")
    p.add_argument("--out", required=True, help="FILE.safetensors (one tensor per input) or FILE.npy")
    p.add_argument("--device", default="cpu")


def run(args) -> int:
    ex = Extractor(args.model, tokenizer=args.tokenizer, device=args.device)
    if args.layer not in ("final", "all") and not args.layer.isdigit():
        raise ValueError(f"--layer must be final, all or a block number, got {args.layer!r}")
    if ex.spec.extract_input == "lines":
        if not args.text_file:
            raise ValueError(f"a {ex.cfg.modality} model needs --text-file (one input per line)")
        inputs = [ln for ln in Path(args.text_file).read_text(encoding="utf-8").splitlines() if ln.strip()]
    elif not args.inputs:
        raise ValueError(f"give the {ex.cfg.modality} files to extract features from")
    else:
        missing = [p for p in args.inputs if not Path(p).is_file()]
        if missing:
            raise ValueError(f"input files not found: {missing[:5]}")
        inputs = args.inputs
    feats = ex.features(inputs, args.layer, args.pool)
    out = save_features(feats, args.out)
    print(f"{len(feats)} inputs -> {out} (layer {args.layer}, pool {args.pool}, shape of the first: "
          f"{tuple(feats[0].shape)})")
    return 0
