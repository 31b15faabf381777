"""``imagefolder:DIR``: one sub-folder per class, decoded with Pillow (no torchvision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from torchslim.data._bundle import DataBundle
from torchslim.errors import DataError, SpecError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Every image is decoded and resized to the first one's size: one 20000x20000 PNG (a few KB on
# disk) would be 1.2 GB decoded, and as the first image, every sample of the data set. Checked
# from the header, before decoding; Pillow's own bomb check only stops images 8x larger.
MAX_IMAGE_PIXELS = 4096 * 4096


def open_image(path: Path, spec: str = "imagefolder"):
    """``Image.open`` (header only), refusing unreadable files and images over ``MAX_IMAGE_PIXELS``."""
    from PIL import Image

    try:
        im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise DataError(f"{spec}: the image {str(path)!r} is too large to decode safely ({e}). Resize it "
                        f"(at most {MAX_IMAGE_PIXELS:,} pixels) or remove it, then run again.") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(f"{spec}: cannot read the image {str(path)!r} ({type(e).__name__}: {e}). "
                        "Remove or replace the file and run again.") from None
    width, height = im.size
    if width * height > MAX_IMAGE_PIXELS:
        im.close()
        raise DataError(f"{spec}: the image {str(path)!r} is {width}x{height} pixels, more than the "
                        f"{MAX_IMAGE_PIXELS:,} torchslim decodes. Resize it (every image is resized to the "
                        "size of the first one anyway) or remove it, then run again.")
    return im


class ImageFolderDataset(Dataset):
    """Images resized to a common size, scaled to [0, 1], shaped (C, H, W)."""

    def __init__(self, items: list[tuple[Path, int]], size: tuple[int, int], mode: str) -> None:
        self.items, self.size, self.mode = items, size, mode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        try:
            with open_image(path) as im:
                im = im.convert(self.mode).resize(self.size)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
            raise DataError(f"imagefolder: cannot read the image {str(path)!r} ({type(e).__name__}: {e}). "
                            "Remove or replace the file and run again.") from None
        if arr.ndim == 2:
            arr = arr[None]
        else:
            arr = arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr)), torch.tensor(label)


def load_imagefolder(spec: str, root: Path, seed: int) -> DataBundle:
    if not root.is_dir():
        raise SpecError(f"{spec}: {str(root)!r} is not a directory. Give a folder with one sub-folder per class.")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"{spec}: found {len(classes)} class sub-folder(s) in {str(root)!r}; need at least 2.")
    items = [
        (f, label)
        for label, name in enumerate(classes)
        for f in sorted((root / name).rglob("*"))
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if len(items) < 3:
        raise DataError(f"{spec}: found {len(items)} images; need at least 3 (train, validation, test).")
    with open_image(items[0][0], spec) as im0:
        size = im0.size
        mode = "L" if im0.mode in ("L", "1", "I", "I;16") else "RGB"
    perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, int(0.2 * len(items)))
    n_val = max(1, int(0.1 * len(items)))
    pick = lambda idx: ImageFolderDataset([items[i] for i in idx], size, mode)  # noqa: E731
    test, val, train = pick(perm[:n_test]), pick(perm[n_test : n_test + n_val]), pick(perm[n_test + n_val :])
    bundle = DataBundle(spec, train, val, test, "classification", len(classes), tuple(train[0][0].shape))
    bundle.extra["classes"] = classes
    return bundle
