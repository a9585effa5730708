"""The patch classifiers of the sea-lion counter (Keras 3; TensorFlow imported on call).

Both take a 64x64 RGB patch, values 0..1 (the host's float32 tiles), and
return softmax probabilities over :data:`PATCH_CLASSES`: the five Kaggle
classes and ``not_sea_lion``. Only built-in Keras layers are used, so the
saved ``.keras`` files load in safe mode.

* :func:`build_seed_baseline`: the network of the sea-lion blog (seed 002),
  layer for layer: three conv/pool blocks of 32, 64 and 128 filters (3x3,
  valid padding), two dense layers of 512 with dropout 0.5, softmax over 6.
  The blog's ``Lambda(x / 255 - 0.5)`` becomes ``Rescaling(offset=-0.5)``
  (our input is already 0..1, and Lambda layers cannot be loaded safely).
  2.7 M parameters, about 10.6 MB as float32.
* :func:`build_compact`: the shipped network. Batch-normalised conv blocks
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

__all__ = ["PATCH", "PATCH_CLASSES", "NOT_SEA_LION", "build_seed_baseline", "build_compact", "build"]


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


def build(kind: str):
    """``"compact"`` or ``"baseline"``."""
    return {"compact": build_compact, "baseline": build_seed_baseline}[kind]()
