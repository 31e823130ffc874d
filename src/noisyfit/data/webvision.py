"""WebVision-mini: the first 50 classes of WebVision 1.0 (Li et al. 2017), real web label noise,
evaluated on WebVision's validation images or on the ImageNet validation images of the same 50
classes (IEG's ``--use_imagenet_as_eval``; WebVision's classes are ImageNet's 1000 synsets, in
the order of ``info/synsets.txt``).

The standard layout of the WebVision 1.0 release (resized version), as the list files name it::

    <root>/info/synsets.txt                 "n01440764 tench, Tinca tinca" (1000 lines)
    <root>/info/train_filelist_google.txt   "google/q0001/000000.jpg 0"
    <root>/info/train_filelist_flickr.txt   "flickr/q0001/000000.jpg 0"
    <root>/info/val_filelist.txt            "val000001.jpg 0"   (images in val_images_256/)
    <root>/google/q0001/*.jpg, <root>/flickr/..., <root>/val_images_256/*.jpg

and ImageNet in the usual class-folder layout (``torchvision.datasets.ImageFolder``)::

    <imagenet>/val/n01440764/ILSVRC2012_val_00000293.JPEG ...   (evaluation)
    <imagenet>/train/n01440764/*.JPEG ...                      (IEG's clean probe images)

``<imagenet>`` defaults to ``<root>/imagenet``. "Mini" is the Google subset of the first 50
classes (MentorNet's and DivideMix's mini-WebVision, ≈66k images); ``sources`` adds Flickr.

Two ways to feed the engine:

* :class:`FolderLoader` — the full-resolution path: a ``torch.utils.data.DataLoader`` with
  decoding workers (PIL), 224×224 random-resized crops + flip for training and resize-256 +
  centre-crop-224 for evaluation, ImageNet normalization on the device. It has the attributes
  and the ``epoch(e) -> Batch`` iterator that ``engine.fit``/``evaluate`` use (``device``,
  ``labels``, ``batch_size``, ``len()``), draws the same seeded (seed, epoch) permutation as
  ``DeviceLoader``, and hands IEG its strong view (a second crop with torchvision's ImageNet
  AutoAugment policy, decoded in the same worker) through ``strong_view(batch)``.
  ``noisyfit ieg --dataset webvisionmini`` uses it.
* the registered dataset ``webvision-mini``: decoded once into memory at a small size (64×64
  by default) so every method runs on it with the device loader (``noisyfit train``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from ..errors import ConfigError, DataError
from .augment import cutout
from .base import DATASETS, Dataset, DatasetNotFoundError, MalformedDataError, candidate_dirs
from .loader import Batch, epoch_generator

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_CLASSES_MINI = 50
_LISTS = {"google": "train_filelist_google.txt", "flickr": "train_filelist_flickr.txt"}
_HOW_TO = (
    "download WebVision 1.0 (resized images + info/ list files) from "
    "https://data.vision.ee.ethz.ch/cvl/webvision/download.html and pass its folder "
    "with --data-dir; for --use-imagenet-as-eval put ImageNet's val/<wnid>/ folders in "
    "<root>/imagenet/ (or pass --imagenet-dir)"
)


@dataclass
class ImageList:
    """Image files with labels. ``paths`` (N,), ``labels`` (N,) int64, ``class_names`` K."""

    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx) -> ImageList:
        idx = np.asarray(idx, dtype=np.int64)
        return ImageList([self.paths[i] for i in idx], self.labels[idx], self.class_names)


def find_root(data_dir=None) -> Path:
    """The WebVision folder: the first candidate folder that holds ``info/synsets.txt``."""
    for name in ("webvision", "webvision-mini"):
        for d in candidate_dirs(name, data_dir):
            if (d / "info" / "synsets.txt").is_file():
                return d
    looked = "\n  ".join(str(d) for d in candidate_dirs("webvision", data_dir))
    raise DatasetNotFoundError(
        f"WebVision not found (no info/synsets.txt).\nLooked in:\n  {looked}\nTo get it: {_HOW_TO}"
    )


def read_synsets(root: Path, num_classes: int = NUM_CLASSES_MINI) -> list[str]:
    """The WordNet ids of the first ``num_classes`` WebVision classes (label order)."""
    lines = [
        ln.split()[0]
        for ln in (root / "info" / "synsets.txt").read_text().splitlines()
        if ln.strip()
    ]
    if len(lines) < num_classes:
        raise MalformedDataError(
            f"{root}/info/synsets.txt lists {len(lines)} synsets; need {num_classes}"
        )
    return lines[:num_classes]


def _read_list(path: Path, base: Path, num_classes: int) -> tuple[list[Path], list[int]]:
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} is missing. To get it: {_HOW_TO}")
    paths, labels = [], []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise MalformedDataError(f"{path}:{ln}: expected '<image path> <label>', got {line!r}")
        y = int(parts[1])
        if 0 <= y < num_classes:
            paths.append(base / parts[0])
            labels.append(y)
    return paths, labels


def webvision_lists(
    root: Path, *, num_classes: int = NUM_CLASSES_MINI, sources: Sequence[str] = ("google",)
) -> tuple[ImageList, ImageList]:
    """(training list, WebVision validation list) restricted to labels < ``num_classes``."""
    names = read_synsets(root, num_classes)
    paths: list[Path] = []
    labels: list[int] = []
    for s in sources:
        if s not in _LISTS:
            raise ConfigError(f"unknown WebVision source {s!r}; valid: {', '.join(_LISTS)}")
        p, y = _read_list(root / "info" / _LISTS[s], root, num_classes)
        paths += p
        labels += y
    val_dir = next(
        (root / d for d in ("val_images_256", "val_images") if (root / d).is_dir()),
        root / "val_images_256",
    )
    vp, vy = _read_list(root / "info" / "val_filelist.txt", val_dir, num_classes)
    return (
        ImageList(paths, np.asarray(labels, np.int64), names),
        ImageList(vp, np.asarray(vy, np.int64), names),
    )


def _class_folder_list(folder: Path, wnids: Sequence[str]) -> ImageList:
    """Images of ``folder/<wnid>/`` (or ``folder/<label index>/``) for the given classes."""
    paths, labels = [], []
    for y, wnid in enumerate(wnids):
        d = folder / wnid
        if not d.is_dir():
            d = folder / str(y)
        if not d.is_dir():
            raise DatasetNotFoundError(f"{folder} has no folder {wnid}/ (or {y}/) for class {y}")
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        paths += files
        labels += [y] * len(files)
    return ImageList(paths, np.asarray(labels, np.int64), list(wnids))


def imagenet_dir(root: Path, imagenet: str | Path | None = None) -> Path:
    return Path(imagenet) if imagenet is not None else root / "imagenet"


def imagenet_val(root: Path, wnids: Sequence[str], imagenet: str | Path | None = None) -> ImageList:
    """The ImageNet validation images of the classes ``wnids`` (IEG's 50-class evaluation)."""
    return _class_folder_list(imagenet_dir(root, imagenet) / "val", wnids)


def imagenet_probe(
    root: Path,
    wnids: Sequence[str],
    per_class: int,
    seed: int = 0,
    imagenet: str | Path | None = None,
) -> ImageList:
    """IEG's WebVision probe: ``per_class`` ImageNet training images per class, seeded."""
    full = _class_folder_list(imagenet_dir(root, imagenet) / "train", wnids)
    rng = np.random.default_rng(seed)
    pick = []
    for y in range(len(wnids)):
        members = np.flatnonzero(full.labels == y)
        if len(members) < per_class:
            raise DataError(
                f"ImageNet train class {wnids[y]} has {len(members)} images; "
                f"cannot take {per_class} as the probe"
            )
        pick.append(rng.choice(members, per_class, replace=False))
    return full.subset(np.sort(np.concatenate(pick)))


# -------------------------------------------------------------------------------- streaming


class _ImageDataset(torch.utils.data.Dataset):
    """Decodes one image in a worker: (index, weak uint8 view, strong uint8 view or empty)."""

    def __init__(self, items: ImageList, train: bool, crop: int, resize: int, strong: bool):
        self.items, self.train, self.strong = items, train, strong
        if train:
            self.weak = v2.Compose(
                [
                    v2.PILToTensor(),
                    v2.RandomResizedCrop(crop, antialias=True),
                    v2.RandomHorizontalFlip(),
                ]
            )
        else:
            self.weak = v2.Compose(
                [v2.PILToTensor(), v2.Resize(resize, antialias=True), v2.CenterCrop(crop)]
            )
        self.strong_t = v2.Compose(
            [
                v2.PILToTensor(),
                v2.RandomResizedCrop(crop, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
            ]
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        with Image.open(self.items.paths[i]) as im:
            im = im.convert("RGB")
            weak = self.weak(im)
            strong = self.strong_t(im) if self.strong else torch.empty(0, dtype=torch.uint8)
        return i, weak, strong


class FolderLoader:
    """Batches of decoded image files: a :class:`~noisyfit.data.loader.Loader` (see module doc).

    Args:
        items: the images and their labels as shipped (possibly noisy).
        batch_size, shuffle, drop_last, seed: as ``DeviceLoader`` (seeded (seed, epoch) order).
        train: random-resized crop + flip (True) or resize + centre crop (False).
        crop, resize: output side (224) and the evaluation resize (256).
        strong: also decode IEG's strong view (ImageNet AutoAugment); read it with
            ``strong_view(batch)`` right after the batch is yielded.
        workers: decoding processes (0: in the main process).
        device: where batches go; mean, std: normalization (ImageNet statistics).

    ``subset(mask)`` iterates over part of the files; ``eval_view()`` decodes them with the
    evaluation transform (resize + centre crop), in index order.
    """

    is_image = True
    in_memory = False  # decoded per batch: no raw array ``x``
    supports_subsets = True

    def __init__(
        self,
        items: ImageList,
        *,
        batch_size: int = 64,
        train: bool = True,
        shuffle: bool | None = None,
        drop_last: bool = False,
        crop: int = 224,
        resize: int = 256,
        strong: bool = False,
        workers: int = 2,
        device: torch.device | str = "cpu",
        seed: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        self.items = items
        self.device = torch.device(device)
        self.labels = torch.as_tensor(items.labels, dtype=torch.int64, device=self.device)
        self.batch_size = int(batch_size)
        self.shuffle = train if shuffle is None else shuffle
        self.drop_last, self.seed, self.workers = drop_last, int(seed), int(workers)
        self.strong = strong
        self.train, self.crop, self.resize = train, crop, resize
        self.input_shape = (3, crop, crop)
        self.indices = torch.arange(len(items), device=self.device)
        self._data = _ImageDataset(items, train, crop, resize, strong)
        self._mul = (1.0 / (255.0 * torch.tensor(std))).view(1, 3, 1, 1).to(self.device)
        self._add = (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1).to(self.device)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def num_samples(self) -> int:
        return len(self.indices)

    def _copy(self) -> FolderLoader:
        new = object.__new__(FolderLoader)
        new.__dict__.update(self.__dict__)
        new._last = None
        return new

    def subset(self, mask) -> FolderLoader:
        """A loader over the files where ``mask`` (N,) bool is True (None: all)."""
        new = self._copy()
        n = len(self.items)
        if mask is None:
            new.indices = torch.arange(n, device=self.device)
            return new
        mask = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask)
        if mask.dtype != torch.bool or mask.shape != (n,):
            raise ValueError(f"a subset mask must be a bool tensor of shape ({n},)")
        new.indices = torch.nonzero(mask.to(self.device)).flatten()
        return new

    def eval_view(self, batch_size: int | None = None) -> FolderLoader:
        """The same files in index order with the evaluation transform (resize + centre crop),
        no strong view."""
        new = self._copy()
        new.train, new.shuffle, new.drop_last, new.strong = False, False, False, False
        new._data = _ImageDataset(self.items, False, self.crop, self.resize, False)
        if batch_size is not None:
            new.batch_size = int(batch_size)
        return new

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        """The files ``index`` (b,) decoded in this process as one batch, in that order
        (random crops, if any, draw from torchvision's global generator)."""
        index = torch.as_tensor(index, dtype=torch.int64)
        weak = torch.stack([self._data[int(i)][1] for i in index.tolist()])
        index = index.to(self.device)
        return Batch(index, self.normalize(weak), self.labels[index])

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def normalize(self, xb: torch.Tensor) -> torch.Tensor:
        return xb.to(self.device, non_blocking=True).float().mul_(self._mul).add_(self._add)

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` in the seeded (seed, epoch) order."""
        n = self.num_samples
        order = self.indices.cpu()
        if self.shuffle:
            order = order[torch.randperm(n, generator=epoch_generator(self.seed, epoch))]
        batches = [
            order[k * self.batch_size : (k + 1) * self.batch_size].tolist()
            for k in range(len(self))
        ]
        dl = DataLoader(
            self._data,
            batch_sampler=batches,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for idx, weak, strong in dl:
            index = idx.to(self.device)
            if self.strong:
                self._last = (index, strong)
            yield Batch(index, self.normalize(weak), self.labels[index])

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)

    def with_labels(self, labels) -> FolderLoader:
        new = self._copy()
        new.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=self.device)
        return new

    def strong_view(self, batch: Batch) -> torch.Tensor:
        """IEG's strong view of the batch just yielded (Cutout of side crop/2 added here)."""
        if self._last is None or not torch.equal(self._last[0], batch.index):
            raise RuntimeError(
                "strong_view(batch) needs the loader built with strong=True and "
                "the batch it yielded last"
            )
        x = self.normalize(self._last[1])
        return cutout(x, x.shape[-1] // 2)


# -------------------------------------------------------------------------------- in memory


def _decode_all(items: ImageList, size: int, workers: int = 2) -> np.ndarray:
    tf = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])

    class _D(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            with Image.open(items.paths[i]) as im:
                return tf(im.convert("RGB"))

    out = np.empty((len(items), 3, size, size), np.uint8)
    k = 0
    for xb in DataLoader(_D(), batch_size=256, num_workers=workers):
        out[k : k + len(xb)] = xb.numpy()
        k += len(xb)
    return out


@DATASETS.register("webvision-mini")
def webvision_mini(
    data_dir=None,
    *,
    image_size: int = 64,
    use_imagenet_as_eval: bool = False,
    sources: Sequence[str] = ("google",),
    workers: int = 2,
    **_,
) -> Dataset:
    """WebVision-mini (first 50 classes, Google images; real noise), decoded at 64×64."""
    root = find_root(data_dir)
    train, val = webvision_lists(root, sources=sources)
    if use_imagenet_as_eval:
        val = imagenet_val(root, train.class_names)
    return Dataset(
        name="webvision-mini",
        x=_decode_all(train, image_size, workers),
        labels=train.labels,
        test_x=_decode_all(val, image_size, workers),
        test_labels=val.labels,
        class_names=train.class_names,
        labels_are_true=False,
        source=f"WebVision 1.0 lists in {root} (first 50 classes, {'+'.join(sources)}), "
        f"decoded at {image_size}x{image_size}",
    )
