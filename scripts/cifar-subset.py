#!/usr/bin/env python3
"""A small CIFAR-10 zip in the layout of the shared one (train/<class>/*.jpg,
test/<class>/*.jpg, stored uncompressed) with the first N train and M test
images of each class: for smoke runs where the whole 65 MB set cannot travel
(the GPU machine of scripts/device-run.sh).

usage: python3 scripts/cifar-subset.py SRC.zip DST.zip [N_TRAIN_PER_CLASS] [N_TEST_PER_CLASS]
"""
import sys
import zipfile


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    per_split = {"train": int(sys.argv[3]) if len(sys.argv) > 3 else 200, "test": int(sys.argv[4]) if len(sys.argv) > 4 else 100}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        chosen: dict[tuple[str, str], list[str]] = {}
        for name in sorted(zin.namelist()):
            parts = name.split("/")
            if len(parts) != 3 or not parts[2] or parts[0] not in per_split:
                continue
            members = chosen.setdefault((parts[0], parts[1]), [])
            if len(members) < per_split[parts[0]]:
                members.append(name)
        for (split, cls), members in sorted(chosen.items()):
            for name in members:
                zout.writestr(name, zin.read(name))
        print(f"{dst}: {sum(len(m) for m in chosen.values())} images in {len(chosen)} class folders")


if __name__ == "__main__":
    main()
