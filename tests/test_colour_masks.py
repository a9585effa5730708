"""The colour-coded mask loader (geodetect.train.colour_masks): tiny files made here, and the real Dubai folder."""

import json
import logging

import numpy as np
import pytest
from conftest import real_dataset

from geodetect.errors import GeodetectError
from geodetect.train.colour_masks import (KNOWN_PALETTES, ColourMaskError, ColourMaskFileMissingError, Palette,
                                          decode_mask, load_pair, mask_colours, mask_palette, pair_colour_masks,
                                          read_classes)

DECLARED = {"Water": "#50E3C2", "Land (unpaved area)": "#F5A623", "Road": "#DE597F", "Building": "#D0021B",
            "Vegetation": "#417505", "Unlabeled": "#9B9B9B"}


def _rgb(h):
    return [int(h[i:i + 2], 16) for i in (1, 3, 5)]


def _make(root, colours, *, groups=("tile_1", "tile_2"), names=("image_part_001", "image_part_002"),
          size=(40, 30), palette_png=False):
    """classes.json with DECLARED colours; masks painted with ``colours`` (title -> #RRGGBB): a building square
    on land, a water strip, one unlabelled pixel. Returns {key: (image, expected class raster)}."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(
        {"classes": [{"title": t, "shape": "polygon", "color": c.lower()} for t, c in DECLARED.items()], "tags": []}))
    titles = list(DECLARED)
    out = {}
    rng = np.random.default_rng(1)
    for g in groups:
        for n in names:
            h, w = size[1], size[0]
            cls = np.full((h, w), titles.index("Land (unpaved area)"), np.int8)
            cls[5:15, 8:20] = titles.index("Building")
            cls[:, -5:] = titles.index("Water")
            cls[0, 0] = titles.index("Unlabeled")
            mask = np.zeros((h, w, 3), np.uint8)
            for i, t in enumerate(titles):
                mask[cls == i] = _rgb(colours[t])
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            for sub in ("images", "masks"):
                (root / g / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / g / "images" / f"{n}.png")  # lossless, so pixels can be compared
            m = Image.fromarray(mask)
            if palette_png:
                m = m.quantize(colors=8, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
            m.save(root / g / "masks" / f"{n}.png")
            out[f"{g}/{n}"] = (img, cls)
    return out


def test_classes_pairs_and_declared_colours(tmp_path):
    data = _make(tmp_path, DECLARED)
    pal = read_classes(tmp_path)
    assert pal.titles == tuple(DECLARED) and pal.colours == tuple(DECLARED.values())  # upper-cased
    assert pal.index("building") == 3 and pal.index("Land") == 1
    with pytest.raises(KeyError):
        pal.index("car")
    pairs = pair_colour_masks(tmp_path)
    assert [p.key for p in pairs] == list(data)
    assert mask_palette(tmp_path, pairs) == pal
    for p in pairs:
        img, cls = load_pair(p, pal)
        np.testing.assert_array_equal(img, data[p.key][0])
        np.testing.assert_array_equal(cls, data[p.key][1])


def test_masks_in_the_known_dubai_palette_are_recognised(tmp_path, caplog):
    """The Dubai set's masks do not use its classes.json colours: the known palette with the same titles is taken."""
    dubai = KNOWN_PALETTES["humans-in-the-loop-dubai"]
    data = _make(tmp_path, dubai, palette_png=True)  # also: palette-mode PNGs decode like RGB ones
    with caplog.at_level(logging.WARNING, logger="geodetect"):
        pal = mask_palette(tmp_path)
    assert "do not use classes.json's colours" in caplog.text
    assert pal.titles == tuple(DECLARED) and pal.colours[pal.index("Building")] == "#3C1098"
    assert "KNOWN_PALETTES" in pal.source
    for p in pair_colour_masks(tmp_path):
        np.testing.assert_array_equal(load_pair(p, pal)[1], data[p.key][1])


def test_decode_marks_unknown_colours():
    pal = Palette(("a", "b"), ("#000000", "#FF0000"))
    m = np.array([[[0, 0, 0], [255, 0, 0], [1, 2, 3]]], np.uint8)
    np.testing.assert_array_equal(decode_mask(m, pal), [[0, 1, -1]])
    assert mask_colours(m) == {"#000000": 1, "#010203": 1, "#FF0000": 1}


def test_errors_name_the_file_and_what_to_do(tmp_path):
    with pytest.raises(ColourMaskFileMissingError, match="not found"):
        pair_colour_masks(tmp_path / "nowhere")
    with pytest.raises(ColourMaskFileMissingError, match="classes.json"):
        read_classes(tmp_path)
    (tmp_path / "classes.json").write_text('{"classes": [{"name": "x"}]}')
    with pytest.raises(ColourMaskError, match="title"):
        read_classes(tmp_path)
    with pytest.raises(ColourMaskFileMissingError, match="no images/ folder"):
        pair_colour_masks(tmp_path)
    # colours that neither classes.json nor a known palette explain
    odd = {t: "#%02X0000" % (10 * i + 5) for i, t in enumerate(DECLARED)}
    _make(tmp_path / "odd", odd, groups=("t",), names=("a",))
    with pytest.raises(ColourMaskError, match=r"colours classes.json does not list \(#"):
        mask_palette(tmp_path / "odd")
    # an image without its mask, and a mask of another size
    _make(tmp_path / "d", DECLARED, groups=("t",), names=("a", "b"))
    (tmp_path / "d" / "t" / "masks" / "b.png").unlink()
    with pytest.raises(ColourMaskFileMissingError, match=r"masks/b.png missing.*same name"):
        pair_colour_masks(tmp_path / "d")
    from PIL import Image

    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "d" / "t" / "masks" / "b.png")
    pair = pair_colour_masks(tmp_path / "d")[1]
    with pytest.raises(ColourMaskError, match=r"b.png: mask is 5 x 5 px but its image .* is 40 x 30 px"):
        load_pair(pair, read_classes(tmp_path / "d"))
    assert issubclass(ColourMaskError, GeodetectError) and issubclass(ColourMaskFileMissingError, FileNotFoundError)


def test_real_dubai_folder():
    root = real_dataset("buildings-dubai")
    pairs = pair_colour_masks(root)
    assert len(pairs) == 72 and len({p.group for p in pairs}) == 8
    assert pairs[0].key == "tile_1/image_part_001" and pairs[-1].key == "tile_8/image_part_009"
    pal = mask_palette(root, pairs)
    assert pal.colours[pal.index("Building")] == "#3C1098" and pal.colours[pal.index("Water")] == "#E2A929"
    img, cls = load_pair(pairs[28], pal)  # tile_4/image_part_002: a dense villa district by a lake
    assert img.shape == (846, 1099, 3) and cls.shape == (846, 1099)
    share = np.bincount(cls.ravel() + 1, minlength=len(pal.titles) + 1) / cls.size
    assert share[0] < 0.01  # almost every pixel has a palette colour
    assert 0.4 < share[1 + pal.index("Building")] < 0.6 and 0.02 < share[1 + pal.index("Water")] < 0.1
    water = img[cls == pal.index("Water")].mean(axis=0)
    land = img[cls == pal.index("Building")].mean(axis=0)
    assert water.mean() < land.mean()  # the colour called Water covers the dark pixels
