"""The training loop: one optimizer update = ``update_freq`` micro-batches per rank, then one EMA step.

Reading order: ``pretrain`` (set-up, resume) -> ``Trainer.train_update`` (one update) -> checkpointing.

Loss normalisation (fairseq ``sample_size``): every micro-batch's loss is a *sum* over its masked
positions; the update's gradient is the sum over all micro-batches on all ranks divided by the global
number of masked positions, which is all-reduced before the backward passes. DDP averages gradients
over ranks, so each rank scales its loss by ``world_size / n_global``. Only the student is wrapped in
DDP; the teacher gets no gradients and every rank applies the same EMA update after the optimizer step
(fairseq ``set_num_updates``), so teachers stay identical without communication.

``train.parallel=fsdp`` (``data2vec.train.fsdp``) shards student and teacher with FSDP2 instead (per Transformer
block; the EMA step runs on local shards); the gradient scaling is the same (FSDP's reduce-scatter averages too),
gradient clipping uses the global norm over the shards, and checkpoints are DCP directories
(``data2vec.train.dcp``) written by every rank and resumable on another world size.

Determinism: masks and crops are drawn from ``(seed, epoch, sample index)``, the data loader uses its
own generator, and the global RNG (dropout, layerdrop) of every rank is saved in the checkpoint, so
``--resume`` on CPU continues bit-identically to an uninterrupted run.

Fault tolerance: checkpoints every ``save_interval_updates`` and at the end, written atomically.
One process (rank 0 for a DDP job) holds the run directory's lock (``RunLock``) for the whole run, so a second
``pretrain`` on the same ``--out`` stops with one line instead of interleaving checkpoints and metrics.
SIGTERM/SIGINT ask for a checkpoint at the next update boundary (agreed across ranks), then exit.
A collapse (``data2vec.core.monitors``) or a non-finite gradient stops the run *before* anything
is saved, so the last checkpoint on disk is the last good one.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from data2vec.config import to_dict
from data2vec.core.data2vec import Data2Vec
from data2vec.core.monitors import check_collapse
from data2vec.data.shards import is_shard_dir
from data2vec.data.skips import SkipLog
from data2vec.errors import Data2VecError
from data2vec.keys import load_into
from data2vec.modalities import get_modality
from data2vec.pretrained import load_pretrained
from data2vec.train import dcp, fsdp
from data2vec.train.checkpoint import (
    RunLock,
    check_state_shapes,
    copy_checkpoint,
    load_checkpoint,
    require_entries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from data2vec.train.config import PretrainConfig, check_model_size, pretrain_config_from_dict
from data2vec.train.distributed import DistInfo, barrier, cleanup, init_distributed
from data2vec.train.optim import build_optimizer, lr_at
from data2vec.train.precision import autocast_context, resolved_precision  # noqa: F401 (autocast_context: benchmarks)
from data2vec.train.run_log import RunLog
from data2vec.train.task import RunHooks

CHECKPOINT = "checkpoint_last.pt"
# config sections that must match the checkpoint on resume (the rest, e.g. max_update, may change)
_FROZEN_SECTIONS = ("modality", "version", "encoder", "masking", "model")
RESUME_ENTRIES = ("config", "model", "optimizer", "step", "epoch", "batch_in_epoch", "rng")  # what --resume reads


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT: a checkpoint was written; rerun with --resume to continue."""


class NonFiniteError(RuntimeError):
    pass


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def batch_stream(data, epoch: int, start_batch: int):
    """Endless (epoch, position-after-this-batch, batch) over epochs; position is what a checkpoint stores."""
    while True:
        got_any = False
        for i, batch in enumerate(data.make_loader(epoch, start_batch), start=start_batch):
            got_any = True
            yield epoch, i + 1, batch
        if not got_any and start_batch == 0:
            raise Data2VecError(f"epoch {epoch} produced no batches: the data set is too small for the batch "
                                "budget and number of ranks (lower data.max_tokens or add data)")
        epoch, start_batch = epoch + 1, 0


class _StopFlag:
    """Set by SIGTERM/SIGINT; checked (and agreed across ranks) at update boundaries."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:  # second signal: give up immediately
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class DataWait:
    """Time the loop waits for the data loader between two log records: ``data_wait_s``, mean seconds per update,
    and ``data_wait_frac``, its share of the step (waiting + ``train_update``; evaluation and checkpoints apart).
    ``Trainer.next_micro_batches`` adds to ``wait``, ``Trainer.train_update`` to ``compute`` and ``updates``."""

    def __init__(self):
        self.wait = self.compute = 0.0
        self.updates = 0

    def report(self) -> dict:
        out = {"data_wait_s": self.wait / max(self.updates, 1),
               "data_wait_frac": self.wait / max(self.wait + self.compute, 1e-9)}
        self.wait = self.compute = 0.0
        self.updates = 0
        return out


class Trainer:
    """Holds the task model, DDP wrapper, optimizer and position; ``train_update`` does one optimizer update,
    ``fit`` runs the updates of a run (pretraining and fine-tuning alike), ``save``/``load`` checkpoint it.

    The model is a ``data2vec.train.task.TrainingTask`` (``Data2Vec`` is one, the fine-tuning heads are others).
    """

    def __init__(self, cfg, model: nn.Module, dist_info: DistInfo, *, allow_fsdp: bool = False):
        self.cfg, self.model, self.dist = cfg, model, dist_info
        self.device = dist_info.device
        self.parallel = getattr(cfg.train, "parallel", "ddp")
        self.wrapped: nn.Module = model.trainable
        self._teacher_units: list[nn.Module] = []  # FSDP teacher units, resharded after each update's forwards
        if self.parallel == "fsdp":
            if not allow_fsdp:
                raise Data2VecError("train.parallel=fsdp is for pretraining; fine-tuning runs with train.parallel=ddp")
            fsdp.check_fsdp_config(cfg)
            if dist_info.world_size > 1:  # one process: plain modules, DCP checkpoints all the same
                self._teacher_units = fsdp.shard_data2vec(
                    model, resolved_precision(self.device, cfg.train.precision))
        if getattr(cfg.train, "compile", False):  # in place (Module.compile): parameter names do not change
            for m in model.compile_targets():
                m.compile()
        self.optimizer = build_optimizer(model.trainable, cfg.optim)  # after sharding: over the DTensors
        if dist_info.world_size > 1 and self.parallel == "ddp":
            drops = ("layerdrop", "prenet_layerdrop")
            unused = (any(float(getattr(cfg.encoder, k, 0.0)) > 0 for k in drops)
                      or bool(getattr(model, "has_unused_parameters", False)))
            self.wrapped = DDP(model.trainable, device_ids=[self.device] if self.device.type == "cuda" else None,
                               find_unused_parameters=unused)
        self.waits = DataWait()
        self.step = 0
        self.wall_s = 0.0  # cumulative training wall time (s), kept across resumes
        self.epoch = 1
        self.batch_in_epoch = 0

    # ---- one update -------------------------------------------------------------------------
    def next_micro_batches(self, stream) -> list[dict]:
        """The next update's ``update_freq`` micro-batches from ``batch_stream``; advances the data position and
        counts the time spent waiting for them (``self.waits``)."""
        t = time.perf_counter()
        micro = []
        for _ in range(self.cfg.train.update_freq):
            self.epoch, self.batch_in_epoch, b = next(stream)
            micro.append(b)
        self.waits.wait += time.perf_counter() - t
        return micro

    def train_update(self, micro_batches: list[dict]) -> dict:
        t_start = time.perf_counter()
        cfg, model, device = self.cfg, self.model, self.device
        model.trainable.train()
        n_local = sum(model.num_units(b) for b in micro_batches)
        n_global = self._all_reduce(torch.tensor([float(n_local)], dtype=torch.float64))[0].item()
        if n_global <= 0:
            raise Data2VecError("nothing to learn from in this update (no masked positions / examples): "
                                "raise masking.mask_prob or check the data")
        scale = self.dist.world_size / n_global
        loss_sum = torch.zeros((), dtype=torch.float64)
        logs: dict[str, list[float]] = {}  # per micro-batch values, averaged where finite
        for j, batch in enumerate(micro_batches):
            batch = to_device(batch, device)
            last = j == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last or not isinstance(self.wrapped, DDP) else self.wrapped.no_sync()
            if self._teacher_units:
                fsdp.set_gradient_sync(self.wrapped, last)
            with sync:
                with autocast_context(device, cfg.train.precision):
                    out = model.step_loss(batch, self.wrapped)
                (out.loss_sum * scale).backward()
            loss_sum += out.loss_sum.detach().double().cpu()
            for k, v in out.logs.items():
                if math.isfinite(v):
                    logs.setdefault(k, []).append(v)

        params = [p for p in model.trainable.parameters() if p.grad is not None]
        max_norm = cfg.optim.clip_norm if cfg.optim.clip_norm > 0 else float("inf")
        if self._teacher_units:
            fsdp.reshard(self._teacher_units)  # FSDP leaves a forward-only root gathered; the EMA needs shards
            grad_norm = fsdp.clip_grad_norm_(params, max_norm)  # global norm over the shards
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()
        if not math.isfinite(grad_norm):
            raise NonFiniteError(
                f"non-finite gradient norm at update {self.step + 1}; nothing was saved after the last "
                "checkpoint. Try a lower learning rate (optim.lr), gradient clipping (optim.clip_norm) or "
                "train.precision=fp32.")
        lr = lr_at(self.step, cfg.optim, cfg.train.max_update)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)  # lr_scale: e.g. layer-wise decay when fine-tuning
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        extra = model.after_update(self.step)
        loss_global = self._all_reduce(loss_sum.view(1))[0].item()
        record = {"loss": loss_global / n_global, "lr": lr, "grad_norm": grad_norm}
        record.update({k: sum(v) / len(v) for k, v in logs.items()})
        for k in getattr(model, "log_keys", ()):
            record.setdefault(k, float("nan"))  # defined in no micro-batch of this update
        record.update(extra)
        record[getattr(model, "units_name", "units")] = int(n_global)
        self.waits.compute += time.perf_counter() - t_start
        self.waits.updates += 1
        return record

    # ---- the update loop ----------------------------------------------------------------------
    def fit(self, data, ckpt_path: Path, log: RunLog, hooks: RunHooks | None = None) -> None:
        """Updates until ``train.max_update``: micro-batches from ``data`` (``PretrainData`` or a fine-tuning task's
        data), a log record every ``log_interval`` updates and at the end, a checkpoint at ``ckpt_path`` every
        ``save_interval_updates`` and at the end. SIGTERM/SIGINT (agreed across ranks) write a checkpoint at the
        next update boundary and raise ``TrainingInterrupted``. ``hooks``: what the run adds (``RunHooks``)."""
        hooks = hooks or RunHooks()
        t_cfg, main = self.cfg.train, self.dist.is_main
        stream = batch_stream(data, self.epoch, self.batch_in_epoch)
        t_last, samples_since = time.time(), 0
        t_update = time.time()  # wall_s: training time (data + compute), checkpoint writes excluded
        with _StopFlag() as stop:
            while self.step < t_cfg.max_update:
                micro = self.next_micro_batches(stream)
                hooks.on_batches(micro, self.epoch)
                samples_since += sum(int(b["source"].size(0)) for b in micro)
                record = self.train_update(micro)
                self.wall_s += time.time() - t_update
                hooks.on_update(record)
                log.advance()
                last = self.step == t_cfg.max_update
                if self.step % t_cfg.log_interval == 0 or last:
                    now = time.time()
                    record["samples_per_s"] = samples_since * self.dist.world_size / max(now - t_last, 1e-9)
                    record["epoch"] = self.epoch
                    record["wall_s"] = round(self.wall_s, 3)
                    record.update(self.waits.report())
                    t_last, samples_since = now, 0
                    log.log(self.step, record)
                hooks.validate(self.step, last)
                stop_now = self._all_reduce(torch.tensor([float(stop.requested)]))[0].item() > 0
                if stop_now or self.step % t_cfg.save_interval_updates == 0 or last:
                    hooks.before_save()
                    self.save(ckpt_path, hooks.checkpoint_extra())
                    if (main and t_cfg.keep_interval_checkpoints and self.parallel == "ddp"
                            and self.step % t_cfg.save_interval_updates == 0):  # fsdp keeps its step directories
                        copy_checkpoint(ckpt_path, ckpt_path.parent / f"checkpoint_{self.step}.pt")
                    if main and self.step % (t_cfg.log_interval * 10) == 0:
                        log.plot()
                t_update = time.time()
                if stop_now:
                    if main:
                        print(f"\nstopped by signal at update {self.step}; checkpoint saved to {ckpt_path}; "
                              "rerun with --resume to continue", flush=True)
                    log.finish({"status": "interrupted", "steps": self.step})
                    raise TrainingInterrupted(str(ckpt_path))

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.dist.world_size == 1:
            return t
        t = t.to(self.device)
        dist.all_reduce(t)
        return t.cpu()

    # ---- checkpoints ------------------------------------------------------------------------
    def state(self, with_tensors: bool = True) -> dict:
        rngs = [rng_state()]
        if self.dist.world_size > 1:
            rngs = [None] * self.dist.world_size
            dist.all_gather_object(rngs, rng_state())
        tensors = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()} if with_tensors else {}
        return {
            "config": to_dict(self.cfg),
            **tensors,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "wall_s": self.wall_s,
            "world_size": self.dist.world_size,
            "rng": rngs,
        }

    def save(self, path: Path, extra: dict | None = None) -> None:
        """Single-file checkpoint at ``path`` (ddp); with ``train.parallel=fsdp`` a DCP step directory in
        ``path``'s run directory (every rank writes its shards). ``extra``: more entries for the checkpoint."""
        extra = extra or {}
        if self.parallel == "fsdp":
            from torch.distributed.checkpoint.state_dict import get_state_dict

            state = self.state_meta() | extra
            model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
            dcp.save(path.parent, self.step, model_sd, optim_sd, state, is_main=self.dist.is_main,
                     keep_old=bool(getattr(self.cfg.train, "keep_interval_checkpoints", False)))
            return
        state = self.state() | extra  # every rank takes part (RNG gather)
        if self.dist.is_main:
            save_checkpoint(path, state)
        if self.dist.world_size > 1:
            dist.barrier()

    def state_meta(self) -> dict:
        """Everything but the tensors of model and optimizer (those go to DCP)."""
        return self.state(with_tensors=False)

    def load(self, ckpt: dict, path: Path | str = "checkpoint", step_dir: Path | None = None) -> None:
        """Resume from a single-file checkpoint ``ckpt``, or (``step_dir``) from a DCP checkpoint whose
        ``trainer.pt`` is ``ckpt``; either works for ddp and fsdp runs, on any world size."""
        require_entries(path, ckpt, RESUME_ENTRIES if step_dir is None else
                        tuple(k for k in RESUME_ENTRIES if k not in ("model", "optimizer")))
        if step_dir is not None or self._teacher_units:
            from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

            model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
            if step_dir is not None:
                dcp.load_into(step_dir, model_sd, optim_sd)
                set_state_dict(self.model, self.optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
            else:
                raise Data2VecError(f"{path} is a single-file checkpoint (a train.parallel=ddp run): resume it with "
                                    "train.parallel=ddp, or on one process")
        else:
            check_state_shapes(path, self.model, ckpt["model"],
                               "resume with the run's own config.json, or start a new --out")
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        self.wall_s = float(ckpt.get("wall_s", 0.0))
        rngs = ckpt["rng"]
        saved_world = ckpt.get("world_size", 1)
        if saved_world == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank])
        else:
            # rank r takes batches r, r + R, ... of an epoch, so batch_in_epoch per rank x R batches of the epoch
            # were consumed: the same global position on the new world size (when it divides)
            consumed = self.batch_in_epoch * saved_world
            if consumed % self.dist.world_size == 0:
                self.batch_in_epoch = consumed // self.dist.world_size
            elif self.dist.is_main:
                print(f"resuming {saved_world} rank(s) on {self.dist.world_size}: the {consumed} batches consumed in "
                      f"epoch {self.epoch} do not divide among the ranks; continuing at batch "
                      f"{self.batch_in_epoch} per rank", flush=True)
            set_rng_state(rngs[0])  # keep rank 0's generator state


def _check_resume_config(cfg: PretrainConfig, saved: dict) -> None:
    now = to_dict(cfg)
    # fields added to the config classes since the checkpoint was written take their defaults
    saved = to_dict(pretrain_config_from_dict(saved))
    diffs = [k for k in _FROZEN_SECTIONS if now.get(k) != saved.get(k)]
    if diffs:
        detail = []
        for k in diffs:
            a, b = saved.get(k), now.get(k)
            if isinstance(a, dict) and isinstance(b, dict):
                detail += [f"{k}.{f}: checkpoint {a.get(f)!r} vs now {b.get(f)!r}"
                           for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]
            else:
                detail.append(f"{k}: checkpoint {a!r} vs now {b!r}")
        raise Data2VecError("cannot resume: the model/masking config differs from the checkpoint's: "
                            + "; ".join(detail) + "; resume with the run's own config.json, or start a new --out")


def pretrain(cfg: PretrainConfig, out_dir: str | Path, *, resume: bool = False) -> dict:
    """Pretrain ``cfg`` into ``out_dir`` (single process, or one process per rank under torchrun).

    Returns the summary dict (loss, steps, time). Raises ``CollapseError``/``NonFiniteError`` without
    touching the last checkpoint, ``TrainingInterrupted`` after saving on SIGTERM/SIGINT.
    """
    run_dir = Path(out_dir)
    ckpt_path = run_dir / CHECKPOINT
    if cfg.train.max_update < 1:
        raise Data2VecError(f"train.max_update must be >= 1 (the number of updates to train), "
                            f"got {cfg.train.max_update}")
    check_model_size(cfg.encoder, cfg.model)  # before anything is allocated
    dist_info = init_distributed(cfg.train.device)
    lock = RunLock(run_dir)  # one run per directory; rank 0 holds it for the job (only rank 0 writes there)
    try:
        if dist_info.is_main:
            lock.acquire()
        found = [p for p in (ckpt_path, run_dir / dcp.POINTER) if p.exists()]
        if found and not resume:
            raise FileExistsError(f"{run_dir} already holds a run ({found[0].name}); pass --resume to continue it, "
                                  "or choose another --out")
        summary = _pretrain(cfg, run_dir, ckpt_path, resume and bool(found), dist_info)
        barrier()  # every rank is done before any tears its process group down
        return summary
    finally:
        lock.release()
        cleanup()


def _latest_dcp(run_dir: Path, ckpt_path: Path) -> Path | None:
    """The DCP step directory to resume from, if the run's latest checkpoint is one (else the single file)."""
    pointer = run_dir / dcp.POINTER
    if not pointer.exists():
        return None
    if ckpt_path.exists() and ckpt_path.stat().st_mtime > pointer.stat().st_mtime:
        return None  # the run switched to ddp after its fsdp part
    return dcp.resolve(pointer)


def _build_model(cfg: PretrainConfig, spec, dist_info: DistInfo, init: bool) -> tuple[nn.Module, Data2Vec]:
    """The encoder and its student/teacher model; with ``init`` (not resuming), loaded from ``train.init_from``."""
    encoder = spec.build_encoder(cfg.encoder)
    model = Data2Vec(encoder, cfg.model).to(dist_info.device)
    if cfg.train.init_from and init:
        load_into(model, load_pretrained(cfg.train.init_from)[1].state_dict())
        if dist_info.is_main:
            print(f"initialised student and teacher from {cfg.train.init_from}")
    return encoder, model


def data_fingerprint(path: str) -> dict | None:
    """The data's ``corpus.json`` fingerprint (``prepare speech`` writes one), recorded in the run's summary so a
    re-created run can tell whether it read the same corpus; None when there is none or it cannot be read."""
    if not path:
        return None
    try:
        info = json.loads((Path(path) / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    return info.get("fingerprint") if isinstance(info, dict) else None


def _restart_epoch_if_shard_plan_changed(cfg: PretrainConfig, ckpt: dict, trainer: Trainer,
                                         dist_info: DistInfo) -> None:
    """Sharded streaming data plans each epoch per (rank, worker) (``data2vec.data.shards``): a resume on
    another number of ranks or loader workers cannot find its place inside that epoch, so it reads the
    current epoch again from its start (nothing is skipped; up to one epoch's samples are seen twice)."""
    path = getattr(cfg.data, "path", "")
    if not path or not is_shard_dir(path) or trainer.batch_in_epoch == 0:
        return
    saved_world = int(ckpt.get("world_size", 1))
    saved_workers = (ckpt.get("config", {}).get("data") or {}).get("num_workers", cfg.data.num_workers)
    if saved_world == dist_info.world_size and saved_workers == cfg.data.num_workers:
        return
    if dist_info.is_main:
        print(f"resuming sharded data written for {saved_world} rank(s) x {saved_workers} worker(s) on "
              f"{dist_info.world_size} x {cfg.data.num_workers}: each epoch's plan depends on both, so epoch "
              f"{trainer.epoch} is read again from its start (its first {trainer.batch_in_epoch} batch(es) per rank "
              "are seen twice)", flush=True)
    trainer.batch_in_epoch = 0


def _pretrain(cfg: PretrainConfig, run_dir: Path, ckpt_path: Path, resume: bool, dist_info: DistInfo) -> dict:
    main = dist_info.is_main
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    spec = get_modality(cfg.modality)
    cfg = spec.resolve_config(cfg)
    ckpt = step_dir = None
    resume_path = ckpt_path
    if resume:
        step_dir = _latest_dcp(run_dir, ckpt_path)
        if step_dir is not None:  # a DCP checkpoint (train.parallel=fsdp): its trainer.pt holds config and position
            resume_path = step_dir
            ckpt = dcp.load_trainer_state(step_dir)
            require_entries(step_dir, ckpt, tuple(k for k in RESUME_ENTRIES if k not in ("model", "optimizer")))
        else:
            ckpt = load_checkpoint(ckpt_path)
            require_entries(ckpt_path, ckpt, RESUME_ENTRIES)
        _check_resume_config(cfg, ckpt["config"])
    if cfg.train.parallel == "fsdp":
        ckpt_path = run_dir / dcp.POINTER  # what the summary and messages name

    seed_everything(cfg.train.seed)
    encoder, model = _build_model(cfg, spec, dist_info, init=ckpt is None)
    data = spec.build_pretrain_data(cfg, encoder, dist_info, seed=cfg.train.seed)
    trainer = Trainer(cfg, model, dist_info, allow_fsdp=True)
    if ckpt is not None:
        trainer.load(ckpt, resume_path, step_dir)
        _restart_epoch_if_shard_plan_changed(cfg, ckpt, trainer, dist_info)
        del ckpt
        if trainer.step >= cfg.train.max_update and main:
            print(f"{resume_path} is at update {trainer.step} >= train.max_update {cfg.train.max_update}: nothing to "
                  "train (raise it with --set train.max_update=N to continue)", flush=True)

    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
        n_params = sum(p.numel() for p in model.student.parameters())
        print(data.report.summary())
        print(f"model: {n_params / 1e6:.2f} M trainable parameters; {data.num_examples} training examples; "
              f"{dist_info.world_size} process(es) on {dist_info.device} "
              f"({resolved_precision(dist_info.device, cfg.train.precision)}); "
              + (f"resuming at update {trainer.step}" if resume else "starting at update 0"), flush=True)
    log = RunLog(run_dir, cfg.train.max_update, trainer.step, enabled=main)
    skips = SkipLog(run_dir, data.report, dist_info, resume=resume)  # files the data readers skipped

    def take_skips(micro: list[dict], epoch: int) -> None:
        for b in micro:
            skips.take(b, epoch)

    hooks = RunHooks(on_batches=take_skips,
                     on_update=lambda r: check_collapse(trainer.step, r["target_var"], r["pred_var"],
                                                        cfg.model.collapse),
                     before_save=skips.save)
    trainer.fit(data, ckpt_path, log, hooks)
    summary = {"status": "done", "steps": trainer.step, "epochs_seen": trainer.epoch,
               "checkpoint": str(ckpt_path), "world_size": dist_info.world_size, "device": str(dist_info.device)}
    summary["precision"] = resolved_precision(dist_info.device, cfg.train.precision)
    if fingerprint := data_fingerprint(cfg.data.path):
        summary["data_fingerprint"] = fingerprint
    summary["skipped_files"] = skips.finish()
    log.finish(summary)
    return summary
