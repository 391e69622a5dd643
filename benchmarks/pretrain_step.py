"""One data2vec pretraining update, ours vs the HF ``transformers`` reference, side by side in one run.

An update = teacher forward (no grad) + student forward/backward on the masked input + AdamW step +
EMA update. Ours runs the real training code (``Trainer.train_update``). HF ``Data2VecAudioModel`` is
inference-only, so the reference step is assembled from it the way DATA.md measured it: the same
architecture as a student (masked with our mask through ``mask_time_indices``) and a teacher copy
(no grad), MSE on masked positions of the averaged top-K hidden states, AdamW, a manual EMA.

Prints one JSON object per (preset, implementation) line: step time (mean and median over the measured
steps, after warm-up), samples/s, audio seconds/s, peak RSS of the process so far, FLOPs per step
counted by ``torch.utils.flop_counter`` and achieved GFLOP/s.

    python benchmarks/pretrain_step.py                                # all presets, CPU, fp32
    python benchmarks/pretrain_step.py --presets audio-tiny-v1 --steps 10 --device cuda --precision bf16
    python benchmarks/pretrain_step.py --presets audio-tiny-v1 audio-tiny-v2 --impls data2vec   # v1 vs v2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import resource
import statistics
import time

import numpy as np
import torch

from data2vec.core.data2vec import Data2Vec
from data2vec.modalities import get_modality
from data2vec.modalities.audio.encoder import conv_frame_lengths, parse_conv_layers
from data2vec.modalities.audio.masking import compute_span_mask
from data2vec.modalities.image import block_mask
from data2vec.modalities.text import mask_tokens
from data2vec.presets import get_preset
from data2vec.train.distributed import DistInfo
from data2vec.train.loop import Trainer, autocast_context

# batch per preset: (clips, samples per clip) or (sequences, tokens) - stated in the output
BATCH = {"audio-tiny-v1": (16, 32000), "audio-base-v1": (4, 80000), "text-tiny-v1": (32, 128),
         "text-base-v1": (8, 512), "image-tiny-v1": (128, 28), "image-base-v1": (8, 224),
         # data2vec 2.0: the same examples per step; the student sees each one clone_batch times
         "audio-tiny-v2": (16, 32000), "audio-base-v2": (4, 80000), "text-tiny-v2": (32, 128),
         "text-base-v2": (8, 512), "image-tiny-v2": (128, 28), "image-base-v2": (8, 224)}
TEXT_VOCAB = {"text-tiny-v1": 8000, "text-base-v1": 50265, "text-tiny-v2": 8000, "text-base-v2": 50265}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_batch(cfg, encoder, batch: int, length: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    if cfg.version == 2:
        if cfg.modality == "text":
            from data2vec.modalities.text.masking_v2 import draw_v2_masks

            source = torch.randint(5, cfg.encoder.vocab_size, (batch, length), generator=g)
            source[:, 0], source[:, -1] = 0, 2
            positions = length
        elif cfg.modality == "image":
            from data2vec.modalities.image.masking_v2 import draw_v2_masks

            source = torch.randn(batch, cfg.encoder.in_chans, length, length, generator=g)
            positions = (cfg.encoder.grid, cfg.encoder.grid)
        else:
            from data2vec.modalities.audio.masking_v2 import draw_v2_masks

            source = torch.randn(batch, length, generator=g)
            positions = int(conv_frame_lengths(torch.tensor([length]), encoder.conv_layers)[0])
        mask = draw_v2_masks(cfg.masking, positions, seed=seed, epoch=1, indices=list(range(batch)))
        return {"source": source, "padding_mask": None, "mask": mask, "num_masked": int(mask.sum())}
    if cfg.modality == "text":
        V = cfg.encoder.vocab_size
        clean = torch.randint(5, V, (batch, length), generator=g)
        clean[:, 0], clean[:, -1] = 0, 2
        rows = [mask_tokens(clean[b].numpy(), cfg.masking, seed=seed, epoch=1, index=b, mask_idx=4,
                            special_ids={0, 1, 2, 3, 4}, vocab_size=V) for b in range(batch)]
        source = torch.from_numpy(np.stack([r[0] for r in rows]))
        mask = torch.from_numpy(np.stack([r[1] for r in rows]))
        return {"source": source, "teacher_source": clean, "padding_mask": None, "mask": mask,
                "num_masked": int(mask.sum())}
    if cfg.modality == "image":
        images = torch.randn(batch, cfg.encoder.in_chans, length, length, generator=g)
        grid = (cfg.encoder.grid, cfg.encoder.grid)
        mask = torch.from_numpy(np.stack([block_mask(grid, cfg.masking, seed=seed, epoch=1, index=b) for b in range(batch)]))
        return {"source": images, "padding_mask": None, "mask": mask, "num_masked": int(mask.sum())}
    source = torch.randn(batch, length, generator=g)
    frames = int(conv_frame_lengths(torch.tensor([length]), encoder.conv_layers)[0])
    mask = torch.from_numpy(compute_span_mask((batch, frames), None, cfg.masking, seed=seed, epoch=1,
                                              indices=np.arange(batch)))
    return {"source": source, "padding_mask": None, "mask": mask, "num_masked": int(mask.sum())}


# The HF models get our encoder config's dropout rates (run() zeroes them unless --keep-dropout): the same work.
def _hf_audio(cfg):
    from transformers import Data2VecAudioConfig, Data2VecAudioModel

    e = cfg.encoder
    conv = parse_conv_layers(e.conv_feature_layers)
    return Data2VecAudioModel(Data2VecAudioConfig(
        hidden_size=e.embed_dim, num_hidden_layers=e.depth,
        num_attention_heads=e.num_heads, intermediate_size=e.ffn_embed_dim,
        conv_dim=[c[0] for c in conv], conv_kernel=[c[1] for c in conv], conv_stride=[c[2] for c in conv],
        conv_bias=e.conv_bias, num_conv_pos_embedding_groups=e.conv_pos_groups,
        conv_pos_kernel_size=e.conv_pos_width // e.conv_pos_depth, num_conv_pos_embeddings=e.conv_pos_depth,
        hidden_dropout=e.dropout, attention_dropout=e.attention_dropout, activation_dropout=e.activation_dropout,
        feat_proj_dropout=e.dropout_input,
        layerdrop=0.0, mask_time_prob=0.05, attn_implementation="sdpa"))  # > 0 creates masked_spec_embed


def _hf_text(cfg):
    from transformers import Data2VecTextConfig, Data2VecTextModel

    e = cfg.encoder
    return Data2VecTextModel(Data2VecTextConfig(
        vocab_size=e.vocab_size, hidden_size=e.embed_dim, num_hidden_layers=e.depth,
        num_attention_heads=e.num_heads, intermediate_size=e.ffn_embed_dim,
        max_position_embeddings=e.max_positions + 2, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
        hidden_dropout_prob=e.dropout, attention_probs_dropout_prob=e.attention_dropout, attn_implementation="sdpa"),
        add_pooling_layer=False)


def _hf_vision(cfg):
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    e = cfg.encoder
    return Data2VecVisionModel(Data2VecVisionConfig(
        image_size=e.image_size, patch_size=e.patch_size, num_channels=e.in_chans, hidden_size=e.embed_dim,
        num_hidden_layers=e.depth, num_attention_heads=e.num_heads, intermediate_size=int(e.embed_dim * e.mlp_ratio),
        layer_norm_eps=e.layer_norm_eps, use_mask_token=True, use_shared_relative_position_bias=True,
        use_mean_pooling=False, layer_scale_init_value=e.layer_scale_init_value, drop_path_rate=e.drop_path_rate,
        hidden_dropout_prob=e.dropout, attention_probs_dropout_prob=e.attention_dropout,
        attn_implementation="sdpa"), add_pooling_layer=False)


def hf_reference(cfg, device):
    """HF Data2Vec{Audio,Text,Vision}Model student + teacher of the same shape, and a step function."""
    text, image = cfg.modality == "text", cfg.modality == "image"
    student = {"text": _hf_text, "image": _hf_vision}.get(cfg.modality, _hf_audio)(cfg).to(device)
    C = student.config.hidden_size
    head = (torch.nn.Sequential(torch.nn.Linear(C, 2 * C), torch.nn.GELU(), torch.nn.Linear(2 * C, C)) if text
            else torch.nn.Linear(C, C)).to(device)
    teacher = copy.deepcopy(student).eval().requires_grad_(False)
    params = list(student.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, foreach=True)
    k = cfg.model.targets.average_top_k_layers

    def step(batch):
        src, mask = batch["source"].to(device), batch["mask"].to(device)
        with autocast_context(device, cfg.train.precision):
            with torch.no_grad():
                t_in = batch.get("teacher_source", batch["source"]).to(device)
                hs = teacher(t_in, output_hidden_states=True).hidden_states[-k:]
                if image:
                    y = sum(torch.nn.functional.layer_norm(h.float()[:, 1:], h.shape[-1:]) for h in hs) / k
                    y = torch.nn.functional.layer_norm(y, y.shape[-1:])
                elif text:
                    y = sum(torch.nn.functional.layer_norm(h.float(), h.shape[-1:]) for h in hs) / k
                else:
                    y = sum(torch.nn.functional.instance_norm(h.float().transpose(1, 2)).transpose(1, 2) for h in hs) / k
            if image:
                x = student(src, bool_masked_pos=mask).last_hidden_state[:, 1:]
            else:
                x = (student(src) if text else student(src, mask_time_indices=mask)).last_hidden_state
            pred = head(x[mask]).float()
            if image:
                loss = torch.nn.functional.smooth_l1_loss(pred, y[mask], beta=2.0)
            elif text:
                loss = torch.nn.functional.smooth_l1_loss(pred, y[mask], beta=4.0, reduction="sum")
            else:
                loss = torch.nn.functional.mse_loss(pred, y[mask], reduction="sum")
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            tp = list(teacher.parameters())
            torch._foreach_mul_(tp, 0.999)
            torch._foreach_add_(tp, list(student.parameters()), alpha=0.001)

    return step, sum(p.numel() for p in params)


def measure(step, batch, warmup: int, steps: int, device, count_flops: bool = True) -> tuple[list[float], float]:
    from torch.utils.flop_counter import FlopCounterMode

    for _ in range(warmup):
        step(batch)
    flops = 0.0
    if count_flops:
        with FlopCounterMode(display=False) as fc:
            step(batch)
        flops = fc.get_total_flops()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times, flops


def build_step(preset: str, impl: str, args):
    """(step function, batch, (cfg, batch size, length, parameter count)) for one preset and implementation;
    ``step`` is None when ``impl`` has no such model (HF: data2vec 2.0)."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = get_preset(preset)
    cfg.train.precision = args.precision
    cfg.train.compile = getattr(args, "compile", False)
    if cfg.version == 2:  # same work every step
        cfg.encoder.layerdrop = cfg.encoder.prenet_layerdrop = 0.0
    else:
        cfg.encoder.layerdrop = 0.0
        if not args.keep_dropout:
            cfg.encoder.dropout = 0.0
    if not args.keep_dropout:  # --keep-dropout: the recipe's dropout, as fairseq's step runs it
        cfg.encoder.attention_dropout = 0.0
    if cfg.modality == "text":
        cfg.encoder.vocab_size = TEXT_VOCAB[preset]
    b, s = args.batch or BATCH[preset]
    encoder = get_modality(cfg.modality).build_encoder(cfg.encoder)
    batch = make_batch(cfg, encoder, b, s)
    if impl == "hf" and cfg.version == 2:
        return None, batch, (cfg, b, s, 0)
    if impl == "data2vec":
        model = Data2Vec(encoder, cfg.model).to(device)
        trainer = Trainer(cfg, model, DistInfo(0, 1, 0, device))
        step, n_params = (lambda bt: trainer.train_update([bt])), sum(p.numel() for p in model.student.parameters())
    else:
        step, n_params = hf_reference(cfg, device)
    return step, batch, (cfg, b, s, n_params)


def run(preset: str, impl: str, args) -> dict:
    device = torch.device(args.device)
    step, batch, (cfg, b, s, n_params) = build_step(preset, impl, args)
    if step is None:
        return {"preset": preset, "impl": impl, "skipped": "transformers has no data2vec 2.0 model; compare with "
                "fairseq (benchmarks/side_by_side.py) or the -v1 preset of the same size"}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    times, flops = measure(step, batch, args.warmup, args.steps, device, count_flops=not cfg.train.compile)
    warmup_s = time.perf_counter() - t0 - sum(times)
    mean = statistics.mean(times)
    out = {
        "preset": preset, "impl": impl, "device": str(device), "precision": args.precision,
        "threads": torch.get_num_threads(),
        "batch": {"text": f"{b} x {s} tokens", "image": f"{b} images {s}x{s}"}.get(
            cfg.modality, f"{b} x {s} samples ({s / 16000:.1f} s)"),
        "params_M": round(n_params / 1e6, 2), "masked": batch["num_masked"],
        "student_rows": int(batch["mask"].size(0)),
        "warmup": args.warmup, "steps": args.steps, "compile": cfg.train.compile, "warmup_s": round(warmup_s, 1),
        "step_s_mean": round(mean, 4), "step_s_median": round(statistics.median(times), 4),
        "step_s_min": round(min(times), 4), "step_s_max": round(max(times), 4),
        "samples_per_s": round(b / mean, 2),
        **({"tokens_per_s": round(b * s / mean, 1)} if cfg.modality == "text" else
           {} if cfg.modality == "image" else {"audio_s_per_s": round(b * s / 16000 / mean, 2)}),
        "gflop_per_step": round(flops / 1e9, 2), "achieved_gflop_s": round(flops / 1e9 / mean, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if device.type == "cuda":
        out["peak_cuda_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=list(BATCH), choices=list(BATCH))
    p.add_argument("--impls", nargs="+", default=["data2vec", "hf"], choices=["data2vec", "hf"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--batch", type=int, nargs=2, metavar=("CLIPS", "SAMPLES"), help="override the stated batch")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--keep-dropout", action="store_true", help="keep the recipe's dropout (layerdrop stays 0)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--compile", action="store_true", help="train.compile: torch.compile the Transformer stacks "
                   "(warm-up includes compilation; FLOPs are not counted)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps({"torch": torch.__version__, "python": platform.python_version(),
                      "cpu": platform.processor() or platform.machine(),
                      "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}), flush=True)
    for preset in args.presets:
        for impl in args.impls:
            print(json.dumps(run(preset, impl, args)), flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
