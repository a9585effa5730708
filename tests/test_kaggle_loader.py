"""The Kaggle sea-lion loader on small files in the competition's layout, made here (JPEG quality 95)."""

import warnings

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from geodetect.errors import ConfigError
from geodetect.train.kaggle_sealions import (
    DOT_RGB,
    KAGGLE_CLASSES,
    KaggleFormatError,
    cut_patches,
    find_dots,
    load_kaggle_train,
    read_mismatched,
    read_rgb,
    read_train_csv,
)

H, W, R = 240, 320, 4  # image size, dot radius (px)


def _write_jpeg(path, img):
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="JPEG", width=img.shape[1], height=img.shape[0], count=3, dtype="uint8",
                           QUALITY=95) as dst:
            dst.write(np.moveaxis(img, -1, 0))


def _photo(rng):
    """A random 'aerial' image: smooth rock-like texture, brownish blobs, fine noise."""
    base = ndimage.gaussian_filter(rng.normal(0, 1, (H, W, 3)), (4, 4, 0))
    img = 95 + 35 * base / base.std() + rng.normal(0, 6, (H, W, 3))
    for _ in range(12):  # animals of pelage colour under some of the dots
        y, x = rng.uniform(0, H), rng.uniform(0, W)
        yy, xx = np.mgrid[0:H, 0:W]
        m = ((xx - x) / 14) ** 2 + ((yy - y) / 6) ** 2 < 1
        img[m] = (150, 115, 85)
    return np.clip(img, 0, 255).astype(np.uint8)


def _dot(img, x, y, rgb, r=R):
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    img[(xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= r * r] = rgb


def _pair(rng, dots, extra=()):
    """(plain, dotted) with ``dots`` = [(x, y, class)], ``extra`` = [(x, y, rgb)] drawn too."""
    plain = _photo(rng)
    dotted = plain.copy()
    for x, y, c in dots:
        _dot(dotted, x, y, DOT_RGB[c])
    for x, y, rgb in extra:
        _dot(dotted, x, y, rgb)
    return plain, dotted


def _layout(rng, n):
    """n dots at least 12 px apart, away from the border, classes in turn."""
    pts = []
    while len(pts) < n:
        p = rng.uniform([12, 12], [W - 12, H - 12])
        if all(np.hypot(*(p - q)) >= 12 for q in pts):
            pts.append(p)
    return [(x, y, KAGGLE_CLASSES[k % 5]) for k, (x, y) in enumerate(pts)]


@pytest.fixture(scope="module")
def kaggle_root(tmp_path_factory):
    """Train/{0..4}.jpg, TrainDotted/, train.csv, MismatchedTrainImages.txt.

    0: 15 dots, two of them touching; 1: train.csv says one pup more than drawn;
    2: one yellow dot (no class) and a blacked-out corner in the dotted copy;
    3: listed as mismatched; 4: has no dotted copy.
    """
    root = tmp_path_factory.mktemp("kaggle")
    rng = np.random.default_rng(42)
    truth = {}
    for tid in range(5):
        dots = _layout(rng, 15)
        extra = []
        if tid == 0:  # two dots touching (centres 2R apart)
            dots[0] = (60.0, 60.0, "adult_females")
            dots[1] = (60.0 + 2 * R, 60.0, "pups")
            dots = [d for d in dots[:2]] + [d for d in dots[2:] if np.hypot(d[0] - 64, d[1] - 60) > 14]
        if tid == 2:
            dots = [d for d in dots if np.hypot(d[0] - 300, d[1] - 120) > 12 and not (d[0] > 250 and d[1] > 200)]
            extra = [(300.0, 120.0, (250, 250, 0))]
        plain, dotted = _pair(rng, dots, extra)
        if tid == 2:
            dotted[200:, 250:] = 0  # censored area, as in some TrainDotted images
        _write_jpeg(root / "Train" / f"{tid}.jpg", plain)
        if tid != 4:
            _write_jpeg(root / "TrainDotted" / f"{tid}.jpg", dotted)
        truth[str(tid)] = dots
    rows = ["train_id,adult_males,subadult_males,adult_females,juveniles,pups"]
    for tid, dots in truth.items():
        n = [sum(d[2] == c for d in dots) for c in KAGGLE_CLASSES]
        if tid == "1":
            n[4] += 1
        rows.append(",".join([tid] + [str(v) for v in n]))
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    (root / "MismatchedTrainImages.txt").write_text("train_id\n3\n")
    return root, truth


def test_find_dots_positions_and_colours(kaggle_root):
    root, truth = kaggle_root
    plain, dotted = read_rgb(root / "Train" / "0.jpg"), read_rgb(root / "TrainDotted" / "0.jpg")
    d = find_dots(plain, dotted)
    true_xy = np.array([(x, y) for x, y, _ in truth["0"]])
    assert len(d) == len(true_xy)
    dist, idx = cKDTree(d[["x", "y"]].to_numpy()).query(true_xy)
    assert dist.max() < 1.0, f"dot centres off by up to {dist.max():.2f} px"
    assert len(set(idx)) == len(true_xy)
    assert d["class_name"].to_numpy()[idx].tolist() == [c for _, _, c in truth["0"]]
    assert (d["colour_distance"] < 30).all()  # JPEG keeps the dot colours close to the references


def test_load_reports_skips_mismatches_and_unknown(kaggle_root):
    root, truth = kaggle_root
    rep, x, y = load_kaggle_train(root, negatives_per_image=3, seed=1)
    assert rep.images == ["0", "1", "2"]
    assert rep.skipped_mismatched == ["3"]
    assert rep.missing == ["4"]
    assert rep.unknown_colours == {"2": 1}
    assert rep.counts_checked
    # image 1: train.csv has one pup more than the dots; nothing else differs
    assert rep.count_mismatches.index.tolist() == ["1"]
    assert rep.count_mismatches.loc["1"].tolist() == [0, 0, 0, 0, -1]
    n_known = sum(len(truth[t]) for t in ("0", "1", "2"))
    assert len(rep.dots) == n_known + 1  # + the yellow one
    assert x.shape == (n_known + 3 * 3, 64, 64, 3) and x.dtype == np.uint8
    assert (y == "not_sea_lion").sum() == 9
    assert set(y[y != "not_sea_lion"]) <= set(KAGGLE_CLASSES)
    assert "3 image pairs" in rep.summary() and "1 mismatched" in rep.summary()


def test_patches_are_centred_on_the_dots(kaggle_root):
    root, truth = kaggle_root
    plain = read_rgb(root / "Train" / "1.jpg")
    xs = np.array([[x, y] for x, y, _ in truth["1"]])
    p = cut_patches(plain, xs)
    for (x, y), patch in zip(xs, p):
        assert np.array_equal(patch[32, 32], plain[int(y), int(x)])
    half = cut_patches(plain, xs[:2], scale=0.5)
    assert half.shape == (2, 64, 64, 3)
    # at scale 0.5 the patch spans 128 source pixels: its centre still shows the point's surroundings
    c, r = int(xs[0, 0]), int(xs[0, 1])
    around = plain[r - 4 : r + 4, c - 4 : c + 4].mean(axis=(0, 1))
    assert np.abs(half[0, 30:34, 30:34].mean(axis=(0, 1)) - around).max() < 25


def test_file_formats(tmp_path):
    (tmp_path / "m.txt").write_text("train_id\n3\n 7 \n\n")
    assert read_mismatched(tmp_path / "m.txt") == {"3", "7"}
    (tmp_path / "bad.txt").write_text("train_id\n3\nseven\n")
    with pytest.raises(KaggleFormatError, match="line 3"):
        read_mismatched(tmp_path / "bad.txt")
    (tmp_path / "t.csv").write_text("train_id,adult_males,subadult_males,adult_females,juveniles\n0,1,2,3,4\n")
    with pytest.raises(KaggleFormatError, match="pups"):
        read_train_csv(tmp_path / "t.csv")
    (tmp_path / "ok.csv").write_text("train_id,adult_males,subadult_males,adult_females,juveniles,pups\n10,1,0,2,0,5\n")
    assert read_train_csv(tmp_path / "ok.csv").loc["10"].tolist() == [1, 0, 2, 0, 5]
    with pytest.raises(ConfigError, match="Train"):
        load_kaggle_train(tmp_path)


# ----------------------------------------------------------------------------- dotted-only photographs


def _rock(rng):
    """A rock-like photograph: grey texture whose channels move together (as real ones do; the colour
    noise of ``_photo``, independent per channel, makes saturated blue and green specks that real rock,
    sea and surf do not have), slightly tinted, tan animals, JPEG-like fine noise."""
    base = ndimage.gaussian_filter(rng.normal(0, 1, (H, W)), 3)
    grey = 110 + 40 * base / base.std()
    img = grey[..., None] * np.array([1.0, 0.97, 0.93]) + rng.normal(0, 4, (H, W, 3))
    yy, xx = np.mgrid[0:H, 0:W]
    for _ in range(12):
        y, x = rng.uniform(0, H), rng.uniform(0, W)
        img[((xx - x) / 14) ** 2 + ((yy - y) / 6) ** 2 < 1] = (170, 135, 105)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def dotted_only(tmp_path_factory):
    """(folder, truth): Train/0.jpg + TrainDotted/0.jpg and TrainDotted/1.jpg only (JPEG quality 95)."""
    root = tmp_path_factory.mktemp("dotted")
    rng = np.random.default_rng(7)
    truth = {}
    for tid in ("0", "1"):
        plain = _rock(rng)
        dotted = plain.copy()
        dots = _layout(rng, 15)
        for x, y, c in dots:
            _dot(dotted, x, y, DOT_RGB[c])
        if tid == "0":
            _write_jpeg(root / "Train" / "0.jpg", plain)
        _write_jpeg(root / "TrainDotted" / f"{tid}.jpg", dotted)
        truth[tid] = (plain, dots)
    return root, truth


def test_find_dots_alone_matches_the_pair(dotted_only):
    """Without the plain copy the dots are found by colour: same places and classes as from the pair."""
    from geodetect.train.kaggle_dotted import find_dots_alone

    root, truth = dotted_only
    dotted = read_rgb(root / "TrainDotted" / "0.jpg")
    d = find_dots_alone(dotted)
    pair = find_dots(read_rgb(root / "Train" / "0.jpg"), dotted)
    true_xy = np.array([(x, y) for x, y, _ in truth["0"][1]])
    assert len(d) == len(pair) == len(true_xy)
    dist, idx = cKDTree(d[["x", "y"]].to_numpy()).query(true_xy)
    assert dist.max() < 1.0 and len(set(idx)) == len(true_xy)
    assert d["class_name"].to_numpy()[idx].tolist() == [c for _, _, c in truth["0"][1]]


def test_find_dots_alone_ignores_brown_areas_and_speckle():
    """A brown animal (a large area near the brown dot colour) and single odd pixels are not dots."""
    from geodetect.train.kaggle_dotted import find_dots_alone

    rng = np.random.default_rng(3)
    img = _rock(rng)
    yy, xx = np.mgrid[0:H, 0:W]
    img[((xx - 100) / 30) ** 2 + ((yy - 100) / 12) ** 2 < 1] = (95, 50, 18)  # brown body, 60 x 24 px
    img[50, 250] = DOT_RGB["adult_males"]
    img[60, 260] = DOT_RGB["pups"]
    noisy = np.clip(img.astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    assert len(find_dots_alone(noisy)) == 0
    _dot(noisy, 200.0, 180.0, DOT_RGB["adult_females"])
    d = find_dots_alone(noisy)
    assert d["class_name"].tolist() == ["adult_females"]
    assert abs(d.x[0] - 200) < 1 and abs(d.y[0] - 180) < 1


def test_paint_dots_leaves_no_dot_colour(dotted_only, tmp_path):
    """After painting the dot colour cannot be found at the dots (nor the dots at all), and the
    painted discs take the values of their surroundings."""
    from geodetect.train.kaggle_dotted import dot_colour_left, find_dots_alone, paint_dots

    root, truth = dotted_only
    plain, dotted = read_rgb(root / "Train" / "0.jpg"), read_rgb(root / "TrainDotted" / "0.jpg")
    dots = find_dots_alone(dotted)
    assert (dot_colour_left(dotted, dots) < 40).all()  # before: every dot's colour is there
    painted = paint_dots(dotted, dots[["x", "y"]].to_numpy(), radius=R)
    left = dot_colour_left(painted, dots)
    assert left.min() > 60, f"dot colour still within {left.min():.0f} of a reference"
    assert len(find_dots_alone(painted)) == 0
    # written out as JPEG and read again (as the training pipeline never does, but a user might), still nothing
    _write_jpeg(tmp_path / "p.jpg", painted)
    assert len(find_dots_alone(read_rgb(tmp_path / "p.jpg"))) == 0
    # the fill is close to what the plain photograph has there (smooth texture), and nothing else changed
    yy, xx = np.mgrid[0:H, 0:W]
    disc = np.zeros((H, W), bool)
    for x, y in dots[["x", "y"]].to_numpy():
        disc |= (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= (R + 3) ** 2
    diff = np.abs(painted.astype(int) - plain.astype(int))
    assert diff[disc].mean() < 25
    assert np.array_equal(painted[~disc], dotted[~disc])


def test_iter_kaggle_photographs_plain_or_painted(dotted_only):
    """A photograph with a plain copy comes plain with the pair's dots; one without, painted."""
    from geodetect.train.kaggle_dotted import dot_colour_left, iter_kaggle_photographs

    root, truth = dotted_only
    got = {tid: (img, dots, painted) for tid, img, dots, painted in iter_kaggle_photographs(root, ["0", "1"])}
    assert got["0"][2] is False and np.array_equal(got["0"][0], read_rgb(root / "Train" / "0.jpg"))
    assert len(got["0"][1]) == 15
    img, dots, painted = got["1"]
    assert painted is True and len(dots) == len(truth["1"][1])
    assert dot_colour_left(img, dots).min() > 60
    with pytest.raises(ConfigError, match="missing"):
        list(iter_kaggle_photographs(root, ["9"]))


def test_real_dotted_only_counts_and_painting():
    """On the real folder: dots found alone equal train.csv (49) and the pair's dots (50); painted out,
    none is left."""
    from conftest import real_dataset

    from geodetect.train.kaggle_dotted import dot_colour_left, find_dots_alone, paint_dots

    root = real_dataset("sealions-noaa")
    expected = read_train_csv(root / "train.csv")
    for tid in ("49", "50"):
        dotted = read_rgb(root / "TrainDotted" / f"{tid}.jpg")
        d = find_dots_alone(dotted)
        found = [int((d["class_name"] == c).sum()) for c in KAGGLE_CLASSES]
        assert found == expected.loc[tid].tolist(), (tid, found)
        if tid == "50":
            pair = find_dots(read_rgb(root / "Train" / "50.jpg"), dotted)
            assert np.hypot(*(pair[["x", "y"]].to_numpy() - d[["x", "y"]].to_numpy()).T).max() < 1.5
        painted = paint_dots(dotted, d[["x", "y"]].to_numpy())
        assert dot_colour_left(painted, d).min() > 60
        assert len(find_dots_alone(painted)) == 0
