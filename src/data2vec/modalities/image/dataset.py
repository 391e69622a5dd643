"""Images: an ImageFolder-style reader (PIL), an IDX reader, augmentation with torch ops, and the collator.

``DIR/<split>/<class>/<file>``: any file PIL can open; RGB, grey, palette and alpha images are converted
to the configured channel count (alpha is composited on white). Augmentation (no torchvision): random
resized crop (area and aspect ranges as torchvision's), horizontal flip, resize, normalisation; each
image's randomness comes from ``(seed, epoch, index)``.

Bad files: ``validate_images`` reads every header before training (no decoding) and drops missing, empty,
unreadable and oversized files (more than ``max_pixels`` pixels, a decompression bomb), naming them in an
``ImageReport``; a file that fails only when decoded (truncated, corrupt data) raises ``UnreadableSample``
and, in a training ``ImageFolder``, is replaced by the next image (``data2vec.data.skips``).
"""

from __future__ import annotations

import io
import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data2vec.data.masks_v2 import BlockMaskV2Config
from data2vec.data.sampler import rng as _rng
from data2vec.data.skips import UnreadableSample, substitute
from data2vec.errors import Data2VecError
from data2vec.modalities.image.masking import BlockMaskConfig, block_mask
from data2vec.modalities.image.masking_v2 import draw_v2_masks

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# Largest image decoded, in pixels (width x height): PIL's own default bomb limit (about 9459 x 9459, 256 MiB
# of RGB). A larger file is skipped before it is decoded; pretraining sets it with data.max_image_pixels.
MAX_IMAGE_PIXELS = 89_478_485
_PARALLEL_PROBE_MIN = 256  # probe headers in a thread pool from this many files on (network file systems)
_MAX_EXAMPLES = 5  # example paths per problem kind in the printed report


def _too_large(pixels: int, max_pixels: int) -> str:
    return (f"too large: {pixels:,} pixels > the limit of {max_pixels:,} (a decompression bomb?); shrink the "
            "image or raise data.max_image_pixels")


def _open(path: Path, max_pixels: int, data: bytes | None = None):
    """``PIL.Image.open`` (header only) with our pixel limit instead of PIL's warning/error pair."""
    from PIL import Image, UnidentifiedImageError

    if not any(f[0] == "ignore" and f[2] is Image.DecompressionBombWarning for f in warnings.filters):
        # our limit below replaces PIL's warning (a filter, as catch_warnings is not thread-safe)
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels  # PIL refuses > 2x its limit at open(): let ours decide
    try:
        im = Image.open(path if data is None else io.BytesIO(data))
    except Image.DecompressionBombError as e:
        pixels = [int(t) for t in str(e).replace("(", " ").split() if t.isdigit()]
        raise UnreadableSample(path, _too_large(pixels[0] if pixels else max_pixels + 1, max_pixels)) from None
    except UnidentifiedImageError:
        raise UnreadableSample(path, "unreadable: not an image PIL can open (wrong or damaged content)") from None
    except Exception as e:  # noqa: BLE001 - PIL's header parsers raise many types on damaged files
        raise UnreadableSample(path, f"unreadable: {type(e).__name__}: {str(e)[:120]}") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise UnreadableSample(path, _too_large(w * h, max_pixels))
    if w < 1 or h < 1:
        im.close()
        raise UnreadableSample(path, f"unreadable: {w} x {h} pixels")
    return im


def load_image(path: str | Path, channels: int, max_pixels: int = MAX_IMAGE_PIXELS,
               data: bytes | None = None) -> np.ndarray:
    """Any PIL-readable image -> uint8 [H, W, channels] (1 = grey, 3 = RGB); ``data``: the file's bytes
    (e.g. from a shard; ``path`` then only names it in errors).

    Raises:
        UnreadableSample: missing, empty, not an image, damaged (e.g. truncated), or more than
            ``max_pixels`` pixels (checked from the header, before decoding).
    """
    from PIL import Image

    path = Path(path)
    try:
        if (len(data) if data is not None else path.stat().st_size) == 0:
            raise UnreadableSample(path, "empty: 0 bytes")
    except OSError as e:
        raise UnreadableSample(path, f"missing: {e.strerror or e}") from None
    with _open(path, max_pixels, data) as im:
        try:
            im.load()
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            im = im.convert("L" if channels == 1 else "RGB")
            arr = np.array(im, dtype=np.uint8)
        except Exception as e:  # noqa: BLE001 - PIL's decoders raise OSError, SyntaxError, ValueError, ...
            raise UnreadableSample(path, f"unreadable: {type(e).__name__}: {str(e)[:120]}") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


_DROPPED = {"missing": "missing", "empty": "empty (0 bytes)", "unreadable": "unreadable",
            "too large": "too large"}


@dataclass
class ImageReport:
    """What ``validate_images`` found: files, usable ones, and every dropped file with its reason."""

    name: str
    max_pixels: int
    total: int = 0
    usable: int = 0
    counts: Counter = field(default_factory=Counter)  # kind -> files
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def add(self, path: str, reason: str) -> None:
        self.counts[reason.split(":", 1)[0]] += 1
        self.dropped.append((path, reason))

    def skipped(self) -> list[tuple[str, str]]:
        """Every file dropped before training, as (path, reason) (``data2vec.data.skips.SkipLog``)."""
        return list(self.dropped)

    def summary(self) -> str:
        lines = [f"{self.name}: {self.total:,} image files, {self.usable:,} usable"]
        for kind in _DROPPED:
            if self.counts[kind]:
                ex = [f"{p} ({r.split(': ', 1)[-1].split(';')[0][:80]})" for p, r in self.dropped
                      if r.split(":", 1)[0] == kind][:_MAX_EXAMPLES]
                more = ", ..." if self.counts[kind] > len(ex) else ""
                lines.append(f"  skipped: {self.counts[kind]} {_DROPPED[kind]}; e.g. {', '.join(ex)}{more}")
        return "\n".join(lines)


def probe_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """None when ``path``'s header is a usable image, else the reason it is not. Decodes nothing."""
    try:
        if path.stat().st_size == 0:
            return "empty: 0 bytes"
        _open(path, max_pixels).close()
    except OSError as e:
        return f"missing: {e.strerror or e}"
    except UnreadableSample as e:
        return e.reason
    return None


def validate_images(files: list[tuple[Path, int]], *, max_pixels: int = MAX_IMAGE_PIXELS,
                    name: str = "images") -> tuple[list[tuple[Path, int]], ImageReport]:
    """Check every (file, label)'s header; keep the usable ones, count and name the rest.

    Raises:
        Data2VecError: nothing usable is left (with the report).
    """
    report = ImageReport(name, max_pixels, total=len(files))
    paths = [f for f, _ in files]
    if len(paths) >= _PARALLEL_PROBE_MIN:
        with ThreadPoolExecutor(max_workers=8) as pool:
            problems = list(pool.map(probe_image, paths, [max_pixels] * len(paths)))
    else:
        problems = [probe_image(p, max_pixels) for p in paths]
    keep = []
    for (path, label), problem in zip(files, problems):
        if problem is None:
            keep.append((path, label))
        else:
            report.add(str(path), problem)
    report.usable = len(keep)
    if not keep:
        raise Data2VecError(f"no usable image in {name}:\n{report.summary()}")
    return keep, report


@dataclass(kw_only=True)
class AugmentConfig:
    image_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)  # random resized crop: fraction of the area
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)


def augment(img_HWC: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator | None) -> torch.Tensor:
    """uint8 [H, W, C] -> normalised float [C, S, S]; ``rng=None`` = centre resize only (evaluation)."""
    x = torch.from_numpy(np.ascontiguousarray(img_HWC)).permute(2, 0, 1).float() / 255.0
    H, W = x.shape[1:]
    if rng is not None:
        area = H * W
        for _ in range(10):
            target = area * rng.uniform(*cfg.crop_scale)
            ratio = math.exp(rng.uniform(math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])))
            w, h = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < w <= W and 0 < h <= H:
                top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
                x = x[:, top:top + h, left:left + w]
                break
        if cfg.hflip and rng.random() < 0.5:
            x = x.flip(-1)
    x = F.interpolate(x[None], size=(cfg.image_size, cfg.image_size), mode="bicubic", align_corners=False,
                      antialias=True)[0].clamp(0, 1)
    mean = torch.tensor(cfg.mean[: x.size(0)]).view(-1, 1, 1)
    std = torch.tensor(cfg.std[: x.size(0)]).view(-1, 1, 1)
    return (x - mean) / std


class ImageFolder(torch.utils.data.Dataset):
    """``root/<class>/<file>`` images; ``classes`` sorted by name.

    Every header is checked at construction (``validate_images``; ``report`` says what was dropped). An
    image that fails when decoded raises ``UnreadableSample``; with ``skip_unreadable`` the next readable
    image (with its own label) takes its place and the sample's ``"skipped"`` names the files passed over.
    ``keep`` (labels of every file found, in order -> the indices to use) chooses a subset before the headers are
    checked, so a few-label fine-tuning checks its 550 files, not all 55,000.
    """

    def __init__(self, root: str | Path, *, channels: int, augment_cfg: AugmentConfig, seed: int, train: bool = True,
                 max_pixels: int = MAX_IMAGE_PIXELS, skip_unreadable: bool = False,
                 keep: Callable[[list[int]], Sequence[int]] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root} is not a directory of class sub-folders (make one with "
                             "`data2vec prepare images --out DIR`)")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        files = [(f, c) for c, name in enumerate(self.classes) for f in sorted((self.root / name).iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {self.root}/<class>/")
        if keep is not None:
            files = [files[i] for i in keep([c for _, c in files])]
        self.files, self.report = validate_images(files, max_pixels=max_pixels, name=str(self.root))
        self.channels, self.aug, self.seed, self.train = channels, augment_cfg, seed, train
        self.max_pixels, self.skip_unreadable = max_pixels, skip_unreadable
        self.sizes = np.ones(len(self.files), dtype=np.int64)  # every image costs the same
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int, slot: int) -> dict:
        """Image ``index`` (and its label) in the place of image ``slot``, augmented with the slot's key."""
        path, label = self.files[index]
        img = load_image(path, self.channels, self.max_pixels)
        rng = _rng(self.seed, self.epoch, slot, 7) if self.train else None
        return {"id": slot, "epoch": self.epoch, "image": augment(img, self.aug, rng), "label": label}

    def __getitem__(self, index: int) -> dict:
        if self.skip_unreadable:
            return substitute(self._load, index, len(self))
        return self._load(index, index)


@dataclass
class ImageCollator:
    """Samples -> {source [B, C, H, W], padding_mask None, mask, labels, indices, num_masked}.

    v1 (``BlockMaskConfig``): BEiT block masks, mask [B, h * w]. data2vec 2.0 (``BlockMaskV2Config``):
    ``clone_batch`` (M) 2-D block masks per image over the square patch grid, mask [B * M, h * w],
    sample-major (row ``b * M + c`` = clone ``c`` of image ``b``).
    """

    mask_cfg: BlockMaskConfig | BlockMaskV2Config
    grid: tuple[int, int]
    seed: int

    def __post_init__(self):
        if not isinstance(self.mask_cfg, (BlockMaskConfig, BlockMaskV2Config)):
            raise ValueError("data2vec 2.0 images use block masks: set masking to a BlockMaskV2Config "
                             f"(mask_prob, mask_length, inverse_mask, ...), not a {type(self.mask_cfg).__name__}")
        if isinstance(self.mask_cfg, BlockMaskV2Config) and self.mask_cfg.mask_length > 1 \
                and self.grid[0] != self.grid[1]:
            raise ValueError(f"2-D block masks need a square patch grid, got {self.grid[0]} x {self.grid[1]}: "
                             "use square images (same height and width, divisible by the patch size)")

    def __call__(self, samples: list[dict]) -> dict:
        if isinstance(self.mask_cfg, BlockMaskV2Config):
            return self._collate_v2(samples)
        masks = np.stack([block_mask(self.grid, self.mask_cfg, seed=self.seed, epoch=s["epoch"], index=s["id"])
                          for s in samples])
        mask = torch.from_numpy(masks)
        return {"source": torch.stack([s["image"] for s in samples]), "padding_mask": None, "mask": mask,
                "labels": torch.tensor([s["label"] for s in samples]),
                "indices": torch.tensor([s["id"] for s in samples]), "num_masked": int(mask.sum())}

    def _collate_v2(self, samples: list[dict]) -> dict:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        # each image with its own epoch, as the v1 path
        mask = torch.cat([draw_v2_masks(self.mask_cfg, self.grid, seed=self.seed, epoch=s["epoch"], indices=[s["id"]])
                          for s in samples])
        return {"source": torch.stack([s["image"] for s in samples]), "padding_mask": None, "mask": mask,
                "labels": torch.tensor([s["label"] for s in samples]),
                "indices": torch.tensor([s["id"] for s in samples]), "num_masked": int(mask.sum())}
