import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from training.preprocess import (
    default_spec,
    load_image,
    open_image,
    resize_fill,
    to_srgb8,
    validate_spec,
)

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def pixels(t: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: [3,H,W] tensor -> HWC uint8-valued array (float, rounded)."""
    x = t.numpy().transpose(1, 2, 0) * STD + MEAN
    return np.rint(x * 255.0)


def spec_for(img: Image.Image) -> dict:
    return default_spec(img.width, img.height)


def test_default_spec_is_exactly_the_server_contract():
    assert default_spec(160, 240) == {
        "width": 160, "height": 240, "fit": "fill", "kernel": "lanczos3",
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "background": [255, 255, 255], "colorspace": "srgb", "layout": "NCHW",
    }  # fmt: skip
    assert list(default_spec(64, 96)) == list(default_spec())  # key order too


@pytest.mark.parametrize(
    "change, message",
    [
        ({"fit": "cover"}, "fit"),
        ({"kernel": "cubic"}, "kernel"),
        ({"width": 0}, "width"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"std": [0.2, 0.0, 0.2]}, "std"),
        ({"background": [255, 255, 256]}, "background"),
        ({"extra": 1}, "unknown keys"),
    ],
)
def test_validate_spec_rejects_bad_specs(change, message):
    with pytest.raises(ValueError, match=message):
        validate_spec({**default_spec(), **change})


def test_missing_spec_key_rejected():
    spec = default_spec()
    del spec["layout"]
    with pytest.raises(ValueError, match="missing keys"):
        validate_spec(spec)


def test_real_poster_shape_range_and_layout(poster_paths):
    spec = default_spec(160, 240)
    t = load_image(poster_paths[0], spec)
    assert t.dtype == torch.float32 and t.shape == (3, 240, 160)
    lo = torch.tensor((0 - MEAN) / STD).view(3, 1, 1)
    hi = torch.tensor((1 - MEAN) / STD).view(3, 1, 1)
    assert torch.all(t >= lo - 1e-5) and torch.all(t <= hi + 1e-5)
    assert t.std() > 0.1  # a real picture, not a constant
    # CHW: channel 0 is red. Compare against an independent HWC computation.
    ref = np.asarray(Image.open(poster_paths[0]).convert("RGB").resize((160, 240), Image.LANCZOS), np.float32)
    assert np.abs(pixels(t)[..., 0] - ref[..., 0]).mean() < 2.0  # same picture, same orientation


def test_catalogue_posters_keep_their_size_before_resize(catalog, catalog_rows):
    for row in catalog_rows[:5]:
        img = to_srgb8(open_image(catalog / row["file"]))
        assert img.mode == "RGB" and img.size == (int(row["width"]), int(row["height"]))


def test_bytes_and_path_inputs_agree(poster_paths):
    spec = default_spec(64, 96)
    with open(poster_paths[1], "rb") as f:
        data = f.read()
    assert torch.equal(load_image(poster_paths[1], spec), load_image(data, spec))


def test_resize_is_lanczos_fill_vertical_first(poster_paths):
    img = to_srgb8(open_image(poster_paths[2]))
    out = resize_fill(img, 64, 96)
    assert out.size == (64, 96)  # stretched to exactly the target, no crop
    want = img.resize((img.width, 96), Image.LANCZOS).resize((64, 96), Image.LANCZOS)
    assert np.array_equal(np.asarray(out), np.asarray(want))
    bilinear = np.asarray(img.resize((64, 96), Image.BILINEAR), np.int16)
    assert np.abs(np.asarray(out, np.int16) - bilinear).max() > 5
    t = load_image(poster_paths[2], default_spec(64, 96))
    assert np.array_equal(pixels(t), np.asarray(out, np.float32))


def test_fill_stretches_without_cropping(tmp_path):
    # 100x100: left half black, right half white -> 50x200: still left black / right white.
    a = np.zeros((100, 100, 3), np.uint8)
    a[:, 50:] = 255
    p = tmp_path / "sq.png"
    Image.fromarray(a).save(p)
    px = pixels(load_image(p, default_spec(50, 200)))
    assert px.shape == (200, 50, 3)
    assert px[:, :20].max() <= 5 and px[:, 30:].min() >= 250


def _two_colour(w, h):
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)  # left red
    a[:, w // 2 :] = (0, 0, 255)  # right blue
    return Image.fromarray(a)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_applied(tmp_path, orientation):
    img = _two_colour(40, 20)
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / f"o{orientation}.png"
    img.save(p, exif=exif)
    expected = {1: img, 3: img.rotate(180), 6: img.transpose(Image.Transpose.ROTATE_270),
                8: img.transpose(Image.Transpose.ROTATE_90)}[orientation]  # fmt: skip
    spec = default_spec(*expected.size)
    got = pixels(load_image(p, spec))
    assert got.shape[:2] == (expected.height, expected.width)
    assert np.array_equal(got, np.asarray(expected, np.float32))
    if orientation == 6:  # stored left (red) is displayed on top
        assert tuple(got[0, 0]) == (255, 0, 0) and tuple(got[-1, 0]) == (0, 0, 255)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    a = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))  # 64x16 gradient
    p = tmp_path / "g.png"
    Image.fromarray(a, "L").save(p)
    px = pixels(load_image(p, default_spec(64, 16)))
    assert np.array_equal(px[..., 0], a) and np.array_equal(px[..., 1], a) and np.array_equal(px[..., 2], a)


def test_alpha_is_flattened_over_white(tmp_path):
    a = np.zeros((4, 3, 4), np.uint8)
    a[:, 0] = (255, 0, 0, 0)  # fully transparent red -> white
    a[:, 1] = (255, 0, 0, 255)  # opaque red -> red
    a[:, 2] = (0, 0, 255, 128)  # half-transparent blue -> light blue
    p = tmp_path / "a.png"
    Image.fromarray(a, "RGBA").save(p)
    px = pixels(load_image(p, default_spec(3, 4)))
    assert tuple(px[0, 0]) == (255, 255, 255)
    assert tuple(px[0, 1]) == (255, 0, 0)
    assert tuple(px[0, 2]) == (127, 127, 255)


def test_alpha_background_comes_from_spec(tmp_path):
    p = tmp_path / "t.png"
    Image.new("RGBA", (2, 2), (10, 20, 30, 0)).save(p)
    spec = {**default_spec(2, 2), "background": [0, 128, 0]}
    assert tuple(pixels(load_image(p, spec))[0, 0]) == (0, 128, 0)


def test_grey_alpha_and_palette_transparency(tmp_path):
    la = tmp_path / "la.png"
    Image.new("LA", (2, 2), (0, 0)).save(la)
    assert tuple(pixels(load_image(la, default_spec(2, 2)))[1, 1]) == (255, 255, 255)
    pal = Image.new("P", (2, 2), 0)
    pal.putpalette([0, 0, 0, 200, 0, 0])
    pal.putpixel((1, 1), 1)
    pp = tmp_path / "p.png"
    pal.save(pp, transparency=0)
    px = pixels(load_image(pp, default_spec(2, 2)))
    assert tuple(px[0, 0]) == (255, 255, 255) and tuple(px[1, 1]) == (200, 0, 0)


def test_cmyk_jpeg_converted_to_rgb(tmp_path):
    a = np.zeros((16, 32, 4), np.uint8)
    a[:, 16:] = (0, 255, 255, 0)  # right half: magenta+yellow = red; left half: no ink = white
    p = tmp_path / "c.jpg"
    Image.fromarray(a, "CMYK").save(p, quality=100)
    assert Image.open(p).mode == "CMYK"
    px = pixels(load_image(p, default_spec(32, 16)))
    assert np.abs(px[8, 4] - (255, 255, 255)).max() <= 3
    assert np.abs(px[8, 28] - (255, 0, 0)).max() <= 3


def test_16bit_grey_png_scaled_not_clipped(tmp_path):
    a = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    px = pixels(load_image(p, default_spec(4, 1)))
    assert px[0, :, 0].tolist() == [0, 1, 128, 255]
    assert np.array_equal(px[..., 0], px[..., 2])


def _png16_rgb(pixels16: np.ndarray) -> bytes:
    h, w, _ = pixels16.shape

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + pixels16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_16bit_rgb_png(tmp_path):
    a = np.array([[[65535, 0, 32768], [256, 65535, 0]]], dtype=np.uint16)
    px = pixels(load_image(_png16_rgb(a), default_spec(2, 1)))
    assert px[0].tolist() == [[255, 0, 128], [1, 255, 0]]


def test_first_frame_of_animation(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100)
    px = pixels(load_image(p, default_spec(4, 4)))
    assert tuple(px[2, 2]) == (255, 0, 0)


def test_icc_profile_transform(tmp_path):
    img = _two_colour(8, 4)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tagged, garbage, plain = tmp_path / "tagged.png", tmp_path / "garbage.png", tmp_path / "plain.png"
    img.save(tagged, icc_profile=srgb)
    img.save(garbage, icc_profile=b"not an icc profile")
    img.save(plain)
    spec = default_spec(8, 4)
    ref = pixels(load_image(plain, spec))
    assert np.abs(pixels(load_image(tagged, spec)) - ref).max() <= 1  # sRGB -> sRGB: identity
    assert np.array_equal(pixels(load_image(garbage, spec)), ref)  # unreadable profile ignored


def test_icc_profile_is_actually_applied(tmp_path, monkeypatch):
    """Tagged images go through the ICC transform; untagged ones do not."""
    import training.preprocess as pp

    calls = []
    real = pp._icc_to_srgb
    monkeypatch.setattr(pp, "_icc_to_srgb", lambda im, icc: calls.append(len(icc)) or real(im, icc))
    img = _two_colour(4, 2)
    tagged, plain = tmp_path / "t.png", tmp_path / "p.png"
    img.save(tagged, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    img.save(plain)
    pp.load_image(plain, default_spec(4, 2))
    assert calls == []
    pp.load_image(tagged, default_spec(4, 2))
    assert len(calls) == 1 and calls[0] > 100


def test_unreadable_image_raises(tmp_path):
    p = tmp_path / "bad.jpg"
    p.write_bytes(b"definitely not a jpeg")
    with pytest.raises(OSError):
        load_image(p, default_spec(8, 8))
    with pytest.raises(OSError):
        load_image(io.BytesIO(b"").getvalue(), default_spec(8, 8))
