"""The building segmenter's network: the thesis' modified U-Net, with fewer filters.

The U-Net thesis (Nguyen 2019, "Semantic segmentation for remote sensing
imagery with distributed deep learning pipeline", section 5.5.2) takes
128 x 128 x 3 tiles through five conv blocks (two 3x3 convolutions each,
2x2 max-pooling between them, 64 -> 1024 filters), adds 50 % dropout after
the 4th and 5th blocks (d4, d5), comes back up through four up-sampling +
convolution steps merged with the encoder's tensors, and ends in a 1x1
convolution with one filter and a sigmoid: the probability that a pixel is
a building, thresholded at 0.5.

Kept here: that structure (five blocks, dropout 0.5 after blocks 4 and 5,
up-sampling then a 2x2 convolution, concatenation, two 3x3 convolutions,
final 1x1 conv + sigmoid). Changed: filters are ``WIDTHS`` (8 times fewer
than the thesis' 64..1024: 0.49 M parameters instead of 31 M, weights of
~2 MB, fast CPU inference), and each convolution is followed by batch normalisation (training
converges in minutes on a CPU). Only built-in Keras layers: the ``.keras``
file loads in safe mode.

TensorFlow is imported inside the functions; importing this module is light.
"""

from __future__ import annotations

#: filters of the five encoder blocks (the thesis: 64, 128, 256, 512, 1024)
WIDTHS = (8, 16, 32, 64, 128)
DROPOUT = 0.5
TILE = 128


def build_model(widths=WIDTHS, dropout: float = DROPOUT, channels: int = 3):
    """Keras U-Net: float32 tiles (N, H, W, channels) in 0..1 -> building probability (N, H, W, 1).

    H and W must be multiples of 16 (four 2x2 poolings).
    """
    from geodetect.plugins.weights import import_tensorflow

    tf = import_tensorflow()
    L = tf.keras.layers

    def conv(x, f, k, name):
        x = L.Conv2D(f, k, padding="same", use_bias=False, kernel_initializer="he_normal", name=name)(x)
        x = L.BatchNormalization(name=name + "_bn")(x)
        return L.ReLU(name=name + "_relu")(x)

    def block(x, f, name):
        return conv(conv(x, f, 3, name + "a"), f, 3, name + "b")

    inp = L.Input((None, None, channels), name="tiles")
    x = L.Rescaling(2.0, offset=-1.0, name="scale")(inp)
    c1 = block(x, widths[0], "c1")
    c2 = block(L.MaxPooling2D(2, name="p1")(c1), widths[1], "c2")
    c3 = block(L.MaxPooling2D(2, name="p2")(c2), widths[2], "c3")
    c4 = block(L.MaxPooling2D(2, name="p3")(c3), widths[3], "c4")
    d4 = L.Dropout(dropout, name="d4")(c4)
    c5 = block(L.MaxPooling2D(2, name="p4")(d4), widths[4], "c5")
    d5 = L.Dropout(dropout, name="d5")(c5)
    x = d5
    for level, skip in ((6, d4), (7, c3), (8, c2), (9, c1)):
        f = widths[9 - level]
        u = conv(L.UpSampling2D(2, name=f"up{level}")(x), f, 2, f"u{level}")
        x = block(L.Concatenate(name=f"merge{level}")([skip, u]), f, f"c{level}")
    out = L.Conv2D(1, 1, activation="sigmoid", name="c10")(x)
    return tf.keras.Model(inp, out, name="unet_building")
