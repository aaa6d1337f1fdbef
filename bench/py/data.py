"""Benchmark 6, Python twin of bench/data.ts: torchvision's DataLoader over the
CIFAR-10 JPEG zip (read in place), PIL decoding, and for the augmented case the
pre-training views as per-sample transforms.v2 in the workers (spec §1:
RandomResizedCrop 0.08-1, flip, ColorJitter 0.4/0.4/0.2/0.1 p 0.8, grayscale
p 0.2, blur p 1.0 / 0.1, solarize p 0.2 on the second view; clean view =
flip). Prints {"imagesPerSecond": ...}.

Usage: python3 data.py ZIP WORKERS BATCH BATCHES AUGMENT(0|1)
"""

import io
import json
import sys
import time
import zipfile

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T


class ZipFolder(Dataset):
    def __init__(self, path, subdir, transform):
        self.path, self.transform, self.zip = path, transform, None
        with zipfile.ZipFile(path) as z:
            names = sorted(n for n in z.namelist() if n.startswith(subdir + "/") and n.lower().endswith((".jpg", ".jpeg", ".png")))
        classes = sorted({n.split("/")[1] for n in names})
        self.items = [(n, classes.index(n.split("/")[1])) for n in names]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if self.zip is None:  # one handle per worker process
            self.zip = zipfile.ZipFile(self.path)
        name, label = self.items[i]
        img = Image.open(io.BytesIO(self.zip.read(name))).convert("RGB")
        return self.transform(img), label


def views(size):
    def view(blur_p, solarize_p):
        return T.Compose([
            T.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=blur_p),
            T.RandomSolarize(128, p=solarize_p),
            T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])

    v1, v2 = view(1.0, 0.0), view(0.1, 0.2)
    clean = T.Compose([T.RandomHorizontalFlip(), T.ToImage(), T.ToDtype(torch.float32, scale=True),
                       T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return lambda img: (clean(img), v1(img), v2(img))


def main():
    path, workers, batch, batches, augment = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
    torch.set_num_threads(1)
    transform = views(32) if augment else T.Compose([T.PILToTensor()])
    ds = ZipFolder(path, "train", transform)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                        persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)
    it = iter(loader)
    for _ in range(2):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    print(json.dumps({"imagesPerSecond": batches * batch / dt}))


if __name__ == "__main__":
    main()
