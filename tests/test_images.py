"Bad-input matrix for pokecard.images: every kind of broken file fails with path + reason, folders never stop on one."
import logging, struct, zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from pokecard.core import PokecardError
from pokecard.images import (IMAGE_EXTENSIONS, ImageLoadError, iter_images, load_image, load_images_skipping,
                             scan_image_folder, to_model_input, validate_card_id)


def noise_image(width=64, height=48, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_header_only(width, height):
    def chunk(kind, data): return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def expect_load_error(path, *fragments):
    with pytest.raises(ImageLoadError) as info: load_image(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments: assert fragment in message, message
    assert isinstance(info.value, PokecardError)
    return message


# --- card ids -----------------------------------------------------------------------------------

@pytest.mark.parametrize("card_id", ["xy12-20", "swshp-SWSH231", "base1-44", "sv3pt5-1", "A_b.c-9", "x" * 64])
def test_valid_card_ids(card_id):
    assert validate_card_id(card_id) == card_id


@pytest.mark.parametrize("card_id, rule", [
    ("", "empty"), ("x" * 65, "65 characters"), ("a/b", "path separator"), ("a\\b", "path separator"),
    ("a\0b", "NUL"), (".hidden", "starts with '.'"), ("..", "starts with '.'"), ("x..y", "'..'"),
    ("a b", "' '"), ("ex10-?", "'?'"), ("ex10-!", "'!'"), ("pokémon", "'é'"), (None, "not a string"), (12, "not a string"),
])
def test_invalid_card_ids(card_id, rule):
    with pytest.raises(PokecardError) as info: validate_card_id(card_id)
    assert rule in str(info.value)


# --- formats that must load -----------------------------------------------------------------------

def test_rgba_composited_on_white(tmp_path):
    image = Image.new("RGBA", (3, 1), (0, 0, 0, 0)); image.putpixel((1, 0), (0, 0, 255, 255))
    image.save(tmp_path / "a.png"); image.save(tmp_path / "a.webp", lossless=True)
    for name in ("a.png", "a.webp"):
        loaded = load_image(tmp_path / name)
        assert loaded.mode == "RGB" and loaded.getpixel((0, 0)) == (255, 255, 255) and loaded.getpixel((1, 0)) == (0, 0, 255)


def test_palette_with_and_without_transparency(tmp_path):
    image = Image.new("P", (2, 1), 0); image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762); image.putpixel((1, 0), 1)
    image.save(tmp_path / "t.png", transparency=0); image.save(tmp_path / "o.png"); image.save(tmp_path / "t.gif", transparency=0)
    assert load_image(tmp_path / "t.png").getpixel((0, 0)) == (255, 255, 255)
    assert load_image(tmp_path / "t.gif").getpixel((0, 0)) == (255, 255, 255)
    assert load_image(tmp_path / "o.png").getpixel((0, 0)) == (10, 20, 30)
    assert load_image(tmp_path / "o.png").getpixel((1, 0)) == (200, 100, 50)


def test_rgb_with_transparent_colour_key(tmp_path):
    image = Image.new("RGB", (2, 1), (1, 2, 3)); image.putpixel((1, 0), (9, 9, 9))
    image.save(tmp_path / "key.png", transparency=(1, 2, 3))
    loaded = load_image(tmp_path / "key.png")
    assert loaded.getpixel((0, 0)) == (255, 255, 255) and loaded.getpixel((1, 0)) == (9, 9, 9)


@pytest.mark.parametrize("mode, value, expected", [
    ("L", 77, (77, 77, 77)), ("1", 1, (255, 255, 255)), ("LA", (40, 255), (40, 40, 40)), ("LA", (40, 0), (255, 255, 255)),
])
def test_grey_modes(tmp_path, mode, value, expected):
    Image.new(mode, (2, 2), value).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").getpixel((0, 0)) == expected


def test_cmyk_jpeg_and_tiff(tmp_path):
    image = Image.new("CMYK", (4, 4), (255, 0, 0, 0))
    image.save(tmp_path / "c.jpg", quality=100); image.save(tmp_path / "c.tiff")
    assert load_image(tmp_path / "c.jpg").getpixel((0, 0)) == (0, 255, 255)
    assert load_image(tmp_path / "c.tiff").getpixel((0, 0)) == (0, 255, 255)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "i16.png")
    assert [load_image(tmp_path / "i16.png").getpixel((x, 0))[0] for x in range(4)] == [0, 1, 128, 255]
    Image.fromarray(values.astype(np.int32), "I").save(tmp_path / "i32.tiff")
    assert [load_image(tmp_path / "i32.tiff").getpixel((x, 0))[0] for x in range(4)] == [0, 1, 128, 255]


@pytest.mark.parametrize("orientation, size", [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))])
def test_exif_orientation(tmp_path, orientation, size):
    image = Image.new("RGB", (40, 20), (0, 0, 255)); image.paste((255, 0, 0), (0, 0, 20, 20))  # red left half
    exif = Image.Exif(); exif[0x0112] = orientation
    image.save(tmp_path / "e.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "e.jpg")
    assert loaded.size == size
    red_at = {1: (5, 10), 3: (35, 10), 6: (10, 5), 8: (10, 35)}[orientation]
    assert loaded.getpixel(red_at)[0] > 200 and loaded.getpixel(red_at)[2] < 60


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "a.gif").getpixel((0, 0)) == (255, 0, 0)


# --- files that must fail -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_truncated_files_fail(tmp_path, fmt):
    path = tmp_path / f"n.{fmt}"
    noise_image().save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    expect_load_error(path, "corrupt or truncated")


def test_truncated_jpeg_missing_only_the_tail_fails(tmp_path):
    path = tmp_path / "n.jpg"
    noise_image().save(path)
    path.write_bytes(path.read_bytes()[:-20])
    expect_load_error(path, "truncated")


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    expect_load_error(tmp_path / "e.png", "empty file")


@pytest.mark.parametrize("content", [b"this is not a picture\n", b"<html><body>404</body></html>", bytes(range(256)) * 4])
def test_non_image_named_jpg(tmp_path, content):
    (tmp_path / "x.jpg").write_bytes(content)
    expect_load_error(tmp_path / "x.jpg", "not an image")


def test_png_with_corrupt_data(tmp_path):
    path = tmp_path / "c.png"
    noise_image().save(path)
    data = bytearray(path.read_bytes()); data[100:140] = b"\xff" * 40
    path.write_bytes(bytes(data))
    expect_load_error(path)


def test_missing_file_and_folder(tmp_path):
    expect_load_error(tmp_path / "nope.png", "no such file")
    expect_load_error(tmp_path, "not a regular file")


@pytest.mark.parametrize("side, fragment", [(10_000, "100 MP"), (20_000, "decompression-bomb")])
def test_decompression_bomb_header(tmp_path, side, fragment):
    (tmp_path / "bomb.png").write_bytes(png_header_only(side, side))
    expect_load_error(tmp_path / "bomb.png", fragment, "decompression-bomb")


def test_max_pixels_is_adjustable(tmp_path):
    noise_image(64, 48).save(tmp_path / "n.png")
    with pytest.raises(ImageLoadError, match="limit"): load_image(tmp_path / "n.png", max_pixels=1000)
    assert load_image(tmp_path / "n.png", max_pixels=64 * 48).size == (64, 48)


def test_refuses_when_truncated_loading_was_enabled_globally(tmp_path, monkeypatch):
    noise_image().save(tmp_path / "n.png")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(PokecardError, match="LOAD_TRUNCATED_IMAGES"): load_image(tmp_path / "n.png")


# --- many files -----------------------------------------------------------------------------------

@pytest.fixture
def mixed_folder(tmp_path):
    noise_image().save(tmp_path / "good1.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    noise_image(seed=1).save(tmp_path / "good2.jpg")
    (tmp_path / "text.webp").write_text("hello")
    noise_image().save(tmp_path / "trunc.png"); (tmp_path / "trunc.png").write_bytes((tmp_path / "trunc.png").read_bytes()[:300])
    return tmp_path, ["good1.png", "empty.jpg", "good2.jpg", "text.webp", "trunc.png", "missing.png"]


def test_load_images_skipping_reports_and_continues(mixed_folder):
    folder, names = mixed_folder
    images, skipped = load_images_skipping([folder / n for n in names])
    assert [p.name for p, _ in images] == ["good1.png", "good2.jpg"]
    assert all(im.mode == "RGB" for _, im in images)
    assert [p.name for p, _ in skipped] == ["empty.jpg", "text.webp", "trunc.png", "missing.png"]
    reasons = dict((p.name, r) for p, r in skipped)
    assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["text.webp"]
    assert "truncated" in reasons["trunc.png"] and "no such file" in reasons["missing.png"]


def test_iter_images_calls_on_error_and_logs_summary(mixed_folder):
    folder, names = mixed_folder
    records, errors = [], []
    handler = logging.Handler(); handler.emit = records.append
    logger = logging.getLogger("pokecard.images"); logger.addHandler(handler)
    try: loaded = list(iter_images([folder / n for n in names], on_error=lambda p, r: errors.append(p.name)))
    finally: logger.removeHandler(handler)
    assert len(loaded) == 2 and errors == ["empty.jpg", "text.webp", "trunc.png", "missing.png"]
    assert any("skipped 4" in r.getMessage() for r in records)


def test_scan_image_folder(tmp_path):
    for rel in ["xy12/xy12-1.png", "xy12/xy12-2.WEBP", "other/deep/xy12-1.jpeg", "base1-44.jpg", "bad name.png",
                "ex10-?.png", ".git/xy12-9.png", "._xy12-1.png", "xy12-5.gif", "readme.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"not decoded by the scan")
    (tmp_path / "folder.png").mkdir()
    skipped = []
    found = scan_image_folder(tmp_path, skipped=skipped)
    assert list(found) == ["base1-44", "xy12-1", "xy12-2"]
    assert sorted(p.name for p in found["xy12-1"]) == ["xy12-1.jpeg", "xy12-1.png"]
    assert sorted(p.name for p, _ in skipped) == ["bad name.png", "ex10-?.png"]
    assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg", ".webp")
    with pytest.raises(PokecardError, match="does not exist"): scan_image_folder(tmp_path / "absent")


# --- model input ----------------------------------------------------------------------------------

def test_to_model_input_inputs_agree(tmp_path):
    image = noise_image(73, 101)
    image.save(tmp_path / "n.png")
    from_pil = to_model_input(image, size=40)
    assert from_pil.shape == (40, 40, 3) and from_pil.dtype == np.uint8 and from_pil.flags.writeable
    assert np.array_equal(from_pil, to_model_input(np.asarray(image), size=40))
    assert np.array_equal(from_pil, to_model_input(tmp_path / "n.png", size=40))
    assert np.array_equal(from_pil, to_model_input(str(tmp_path / "n.png"), size=40))
    assert np.array_equal(from_pil, np.asarray(image.resize((40, 40), Image.Resampling.BILINEAR)))


def test_to_model_input_converts_modes():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert (to_model_input(rgba, size=4) == 255).all()
    assert to_model_input(Image.new("L", (10, 10), 9), size=4)[0, 0].tolist() == [9, 9, 9]


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32),
                                 np.zeros((0, 8, 3), np.uint8), [[1, 2, 3]], None])
def test_to_model_input_rejects_bad_arrays(bad):
    with pytest.raises(PokecardError): to_model_input(bad)


@pytest.mark.parametrize("size", [0, -1, 2.5, True, "224"])
def test_to_model_input_rejects_bad_size(size):
    with pytest.raises(PokecardError, match="positive integer"): to_model_input(Image.new("RGB", (4, 4)), size=size)


# --- tiny images and duplicate card ids ---------------------------------------------------------------------------

from pokecard.images import MIN_CARD_SIDE, SCAN_PREFERENCE


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (31, 200), (200, 31)])
def test_tiny_images_are_skipped_with_their_size(tmp_path, size):
    "Below MIN_CARD_SIDE px on the short side a file is reported and skipped, like a corrupt one (old code: loaded as a card)."
    noise_image(*size).save(tmp_path / "tiny.png")
    noise_image().save(tmp_path / "good.png")
    images, skipped = load_images_skipping([tmp_path / "tiny.png", tmp_path / "good.png"])
    assert [p.name for p, _ in images] == ["good.png"]
    assert skipped == [(tmp_path / "tiny.png", f"it is {size[0]}×{size[1]} px, smaller than the {MIN_CARD_SIDE} px minimum for a card image")]
    errors = []
    assert [p.name for p, _ in iter_images([tmp_path / "tiny.png", tmp_path / "good.png"], on_error=lambda p, r: errors.append((p.name, r)))] == ["good.png"]
    assert errors[0][0] == "tiny.png" and "smaller than the 32 px minimum" in errors[0][1]


def test_min_card_side_is_32_and_the_floor_is_inclusive(tmp_path):
    assert MIN_CARD_SIDE == 32
    noise_image(32, 45).save(tmp_path / "ok.png")
    images, skipped = load_images_skipping([tmp_path / "ok.png"])
    assert len(images) == 1 and not skipped


def test_load_image_has_no_floor_unless_asked(tmp_path):
    noise_image(4, 4).save(tmp_path / "t.png")
    assert load_image(tmp_path / "t.png").size == (4, 4)  # the generic loader (photos, fixtures) keeps small images
    with pytest.raises(ImageLoadError, match="4×4 px, smaller than the 32 px minimum for a card image") as info:
        load_image(tmp_path / "t.png", min_side=MIN_CARD_SIDE)
    assert info.value.path == tmp_path / "t.png"
    assert [p.name for p, _ in iter_images([tmp_path / "t.png"], min_side=0)] == ["t.png"]


def test_tiny_size_is_read_from_the_header_before_decoding(tmp_path):
    "A 2×2 header over a broken body: refused for its size (no decode needed)."
    (tmp_path / "h.png").write_bytes(png_header_only(2, 2))
    with pytest.raises(ImageLoadError, match="2×2 px"): load_image(tmp_path / "h.png", min_side=MIN_CARD_SIDE)


def test_duplicate_card_ids_are_reported_and_kept_in_preference_order(tmp_path):
    "x.png and x.webp (and copies in other folders): all kept, png first, then webp, jpg, jpeg, then by path; a warning names every file."
    for rel in ["a/x.webp", "b/x.png", "c/x.jpeg", "d/x.jpg", "z/x.png", "y.jpg", "y.webp", "solo.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        noise_image().save(tmp_path / rel, format="PNG")
    records = []
    handler = logging.Handler(); handler.emit = records.append
    logger = logging.getLogger("pokecard.images"); logger.addHandler(handler)
    try: found = scan_image_folder(tmp_path)
    finally: logger.removeHandler(handler)
    assert SCAN_PREFERENCE == (".png", ".webp", ".jpg", ".jpeg")
    assert [p.relative_to(tmp_path).as_posix() for p in found["x"]] == ["b/x.png", "z/x.png", "a/x.webp", "d/x.jpg", "c/x.jpeg"]
    assert [p.name for p in found["y"]] == ["y.webp", "y.jpg"] and [p.name for p in found["solo"]] == ["solo.jpg"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING and "image files" in r.getMessage()]
    assert len(warnings) == 2
    x_warning = next(w for w in warnings if "'x'" in w)
    assert all(str(tmp_path / rel) in x_warning for rel in ["a/x.webp", "b/x.png", "c/x.jpeg", "d/x.jpg", "z/x.png"])
    assert "5 image files" in x_warning and "first readable" in x_warning
    assert not any("solo" in w for w in warnings)


def test_scan_order_does_not_depend_on_the_filesystem(tmp_path):
    "Same files created in another order: the same lists."
    names = ["m/k.jpg", "a/k.webp", "k.png"]
    for order, folder in ((names, tmp_path / "one"), (names[::-1], tmp_path / "two")):
        for rel in order:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            noise_image().save(folder / rel, format="PNG")
    one, two = scan_image_folder(tmp_path / "one"), scan_image_folder(tmp_path / "two")
    assert [p.relative_to(tmp_path / "one") for p in one["k"]] == [p.relative_to(tmp_path / "two") for p in two["k"]] == \
           [Path("k.png"), Path("a/k.webp"), Path("m/k.jpg")]
