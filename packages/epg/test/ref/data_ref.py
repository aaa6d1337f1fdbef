"""Python references for the data pipeline tests (packages/epg/test/data-*.test.ts):
PIL for image files and the ADM centre crop, torchvision for augmentations,
zipfile for archives, gzip/struct for IDX files.

Usage: python3 data_ref.py in.json out.json
in.json: {"cases": [{"op": ..., ...}, ...]}; out.json: {"results": [...]} in order.
Byte arrays travel as base64 strings; float arrays as base64 float32 (little-endian).
"""
import base64
import gzip
import io
import json
import struct
import sys
import zipfile

import numpy as np
from PIL import Image


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def unb64(s, dtype=np.uint8):
    return np.frombuffer(base64.b64decode(s), dtype=dtype)


def pil_array(path, channels=None):
    """What a loader sees: PIL's convert('RGB') or convert('L'), except for
    16-bit grayscale, which PIL's convert() clips; there the high byte."""
    im = Image.open(path)
    im.load()
    if im.mode in ("I;16", "I;16B", "I"):
        a = np.array(im).astype(np.uint32) >> 8
        a = a.astype(np.uint8)
        if channels == 3:
            a = np.repeat(a[:, :, None], 3, axis=2)
        return a
    if channels is None:
        channels = natural_channels(path)
    return np.array(im.convert("L" if channels == 1 else "RGB"))


def natural_channels(path):
    im = Image.open(path)
    return 1 if im.mode in ("L", "LA", "1", "I;16", "I;16B", "I") else 3


def rng_image(seed, h, w, c, smooth=False):
    r = np.random.default_rng(seed)
    a = r.integers(0, 256, size=(h, w, c), dtype=np.uint8)
    if smooth:  # a photo-like image: gradients plus a little noise
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 127 // max(h + w - 2, 1))], -1)
        a = np.clip(base[:, :, :c] + r.integers(-20, 21, size=(h, w, c)), 0, 255).astype(np.uint8)
    return a


def op_make_image(c):
    """Writes one image file with PIL; returns the pixels a PIL loader sees."""
    h, w, kind, path = c["h"], c["w"], c["kind"], c["path"]
    seed = c.get("seed", 0)
    smooth = c.get("smooth", False)
    fmt = "JPEG" if path.lower().endswith((".jpg", ".jpeg")) else "PNG"
    save = dict(c.get("save", {}))
    if kind == "L":
        im = Image.fromarray(rng_image(seed, h, w, 1, smooth)[:, :, 0], "L")
    elif kind == "RGB":
        im = Image.fromarray(rng_image(seed, h, w, 3, smooth), "RGB")
    elif kind == "RGBA":
        im = Image.fromarray(rng_image(seed, h, w, 4, smooth), "RGBA")
    elif kind == "LA":
        im = Image.fromarray(rng_image(seed, h, w, 2, smooth), "LA")
    elif kind == "P":
        im = Image.fromarray(rng_image(seed, h, w, 3, smooth), "RGB").quantize(colors=c.get("colors", 37))
        if c.get("transparency") is not None:
            save["transparency"] = c["transparency"]
    elif kind == "1":
        im = Image.fromarray(rng_image(seed, h, w, 1)[:, :, 0] > 127).convert("1")
    elif kind == "I;16":
        a = np.random.default_rng(seed).integers(0, 65536, size=(h, w), dtype=np.uint16)
        im = Image.fromarray(a)  # mode I;16
    elif kind == "RGB16":
        # PIL cannot write 16-bit RGB PNGs; build one by hand (IHDR depth 16, colour type 2).
        a = np.random.default_rng(seed).integers(0, 65536, size=(h, w, 3), dtype=np.uint16)
        write_png16(path, a, color_type=2)
        return {"pixels": b64((a >> 8).astype(np.uint8)), "channels": 3}
    elif kind == "GRAY_TRNS":
        im = Image.fromarray(rng_image(seed, h, w, 1, smooth)[:, :, 0], "L")
        save["transparency"] = int(np.asarray(im)[0, 0])
    elif kind == "RGB_TRNS":
        im = Image.fromarray(rng_image(seed, h, w, 3, smooth), "RGB")
        save["transparency"] = tuple(int(v) for v in np.asarray(im)[0, 0])
    else:
        raise ValueError(kind)
    if c.get("bits"):
        save["bits"] = c["bits"]
    im.save(path, fmt, **save)
    ch = c.get("channels") or natural_channels(path)
    a = pil_array(path, ch)
    return {"pixels": b64(a), "channels": int(a.shape[2]) if a.ndim == 3 else 1, "width": int(a.shape[1]), "height": int(a.shape[0])}


def write_png16(path, a, color_type):
    import zlib

    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    open(path, "wb").write(png)


def op_decode(c):
    out = []
    for p in c["paths"]:
        a = pil_array(p, c.get("channels"))
        out.append({"pixels": b64(a), "channels": int(a.shape[2]) if a.ndim == 3 else 1, "width": int(a.shape[1]), "height": int(a.shape[0])})
    return out


def op_decode_zip(c):
    with zipfile.ZipFile(c["path"]) as z:
        return [b64(np.array(Image.open(io.BytesIO(z.read(n))).convert("RGB"))) for n in c["names"]]


def center_crop_arr(pil_image, image_size):
    # guided-diffusion / EPG prepare_dataset/process.py
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


def op_center_crop(c):
    out = []
    for p in c["paths"]:
        im = Image.open(p).convert(c.get("mode", "RGB"))
        out.append(b64(center_crop_arr(im, c["res"])))
    return out


def op_resize(c):
    im = Image.open(c["path"]).convert(c.get("mode", "RGB"))
    f = {"box": Image.BOX, "bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[c["filter"]]
    return b64(np.array(im.resize((c["w"], c["h"]), resample=f)))


def op_make_zip(c):
    method = zipfile.ZIP_DEFLATED if c["deflate"] else zipfile.ZIP_STORED
    with zipfile.ZipFile(c["path"], "w", method) as z:
        for d in c.get("dirs", []):
            z.writestr(zipfile.ZipInfo(d), b"")
        for src, arc in c["files"]:
            z.write(src, arc)
    return None


def op_make_idx(c):
    codes = {"uint8": (0x08, ">u1"), "int8": (0x09, ">i1"), "int16": (0x0B, ">i2"), "int32": (0x0C, ">i4"), "float32": (0x0D, ">f4"), "float64": (0x0E, ">f8")}
    code, bed = codes[c["dtype"]]
    a = np.array(c["data"]).astype(bed).reshape(c["shape"])
    raw = bytes([0, 0, code, len(c["shape"])]) + b"".join(struct.pack(">i", s) for s in c["shape"]) + a.tobytes()
    data = gzip.compress(raw) if c.get("gzip") else raw
    open(c["path"], "wb").write(data)
    return None


# ------------------------------------------------------------- torchvision


def tv_case(c):
    import torch
    import torchvision.transforms.functional as TF

    x = torch.from_numpy(unb64(c["x"], np.float32).copy()).reshape(c["shape"])
    outs = []
    for b in range(x.shape[0]):
        img = x[b]
        p = {k: v[b] if isinstance(v, list) else v for k, v in c.get("params", {}).items()}
        name = c["fn"]
        if name == "brightness":
            y = TF.adjust_brightness(img, p["factor"])
        elif name == "contrast":
            y = TF.adjust_contrast(img, p["factor"])
        elif name == "saturation":
            y = TF.adjust_saturation(img, p["factor"])
        elif name == "hue":
            y = TF.adjust_hue(img, p["factor"])
        elif name == "grayscale":
            y = TF.rgb_to_grayscale(img, num_output_channels=img.shape[0]) if p["apply"] else img
        elif name == "solarize":
            y = TF.solarize(img, 0.5) if p["apply"] else img
        elif name == "hflip":
            y = TF.hflip(img) if p["apply"] else img
        elif name == "blur":
            k = c["kernel"]
            y = TF.gaussian_blur(img, [k, k], [p["sigma"], p["sigma"]]) if p["apply"] else img
        elif name == "resized_crop":
            y = TF.resized_crop(img, int(p["top"]), int(p["left"]), int(p["height"]), int(p["width"]), list(img.shape[-2:]),
                                interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        elif name == "jitter":
            # ColorJitter.forward with given factors and order
            y = img
            for fn_id in p["order"]:
                if fn_id == 0:
                    y = TF.adjust_brightness(y, p["b"])
                elif fn_id == 1:
                    y = TF.adjust_contrast(y, p["c"])
                elif fn_id == 2:
                    y = TF.adjust_saturation(y, p["s"])
                elif fn_id == 3:
                    y = TF.adjust_hue(y, p["h"])
            if not p["apply"]:
                y = img
        else:
            raise ValueError(name)
        outs.append(y)
    return b64(torch.stack(outs).numpy().astype(np.float32))


def op_tv(c):
    return tv_case(c)


def op_rrc_params(c):
    """torchvision RandomResizedCrop.get_params on many draws: area fractions and aspect ratios."""
    import torch
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(c["seed"])
    img = torch.zeros(1, c["h"], c["w"])
    out = []
    for _ in range(c["n"]):
        i, j, h, w = RandomResizedCrop.get_params(img, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
        out.append([i, j, h, w])
    return out


def op_interpolate_bicubic(c):
    import torch
    import torch.nn.functional as F

    a = unb64(c["x"]).reshape(c["h"], c["w"], c["c"])
    t = torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float()
    y = F.interpolate(t, size=(c["oh"], c["ow"]), mode="bicubic", antialias=True, align_corners=False)
    return b64(y.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy())


def op_make_grid(c):
    import torch
    from torchvision.utils import make_grid

    t = torch.from_numpy(unb64(c["x"]).copy()).reshape(c["shape"])
    g = make_grid(t, nrow=c["nrow"], padding=c["padding"], pad_value=c.get("pad_value", 0))
    if t.shape[1] == 1:
        g = g[:1]
    return b64(g.permute(1, 2, 0).contiguous().numpy())


def op_read_png(c):
    im = Image.open(c["path"])
    return {"mode": im.mode, "size": list(im.size), "pixels": b64(np.array(im))}


OPS = {k[3:]: v for k, v in globals().items() if k.startswith("op_")}


def main():
    cases = json.load(open(sys.argv[1]))["cases"]
    results = [OPS[c["op"]](c) for c in cases]
    json.dump({"results": results}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
