"""Images: an ImageFolder-style reader (PIL), an IDX reader, augmentation with torch ops, and the collator.

``DIR/<split>/<class>/<file>``: any file PIL can open; RGB, grey, palette and alpha images are converted
to the configured channel count (alpha is composited on white). Augmentation (no torchvision): random
resized crop (area and aspect ranges as torchvision's), horizontal flip, resize, normalisation; each
image's randomness comes from ``(seed, epoch, index)``.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data2vec.data.masks_v2 import BlockMaskV2Config, RandomMaskV2Config, draw_v2_masks
from data2vec.data.sampler import rng as _rng
from data2vec.modalities.vision.masking import BlockMaskConfig, block_mask

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def read_idx(path: str | Path) -> np.ndarray:
    """IDX file (MNIST format, optionally gzipped) -> numpy array (magic: 0 0 dtype ndim, then dims)."""
    path = Path(path)
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file")
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[raw[2]]
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)


def load_image(path: str | Path, channels: int) -> np.ndarray:
    """Any PIL-readable image -> uint8 [H, W, channels] (1 = grey, 3 = RGB)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        im = im.convert("L" if channels == 1 else "RGB")
        arr = np.array(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


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
    """``root/<class>/<file>`` images; ``classes`` sorted by name; unreadable files are reported at start."""

    def __init__(self, root: str | Path, *, channels: int, augment_cfg: AugmentConfig, seed: int, train: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root} is not a directory of class sub-folders (make one with "
                             "`data2vec prepare images --out DIR`)")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.files = [(f, c) for c, name in enumerate(self.classes) for f in sorted((self.root / name).iterdir())
                      if f.suffix.lower() in IMAGE_SUFFIXES]
        if not self.files:
            raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {self.root}/<class>/")
        self.channels, self.aug, self.seed, self.train = channels, augment_cfg, seed, train
        self.sizes = np.ones(len(self.files), dtype=np.int64)  # every image costs the same
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path, label = self.files[index]
        try:
            img = load_image(path, self.channels)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"cannot read image {path}: {e}") from None
        rng = _rng(self.seed, self.epoch, index, 7) if self.train else None
        return {"id": index, "epoch": self.epoch, "image": augment(img, self.aug, rng), "label": label}


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
        if isinstance(self.mask_cfg, RandomMaskV2Config):
            raise ValueError("data2vec 2.0 images use block masks: set masking to a BlockMaskV2Config "
                             "(mask_prob, mask_length, inverse_mask, ...), not a RandomMaskV2Config")
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
