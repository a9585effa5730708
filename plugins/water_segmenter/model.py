"""The water segmenter's network: a small fully-convolutional U-Net (built-in Keras layers only).

Input: float32 tiles (N, H, W, 3) with bands green, red, nir scaled to 0..1;
H and W multiples of 4. Output: water probability (N, H, W, 1), sigmoid.

Encoder 16 -> 32 -> 48 channels (two 2x2 max-pools), decoder with skip
connections back to full resolution, a final 1x1 convolution with a sigmoid.
Receptive field about 40 pixels: enough for a shoreline's context, small
enough that the network stays a per-pixel water model and runs fast.

TensorFlow is imported inside the functions; importing this module is light.
"""

from __future__ import annotations

WIDTHS = (16, 32, 48)
BANDS = ("green", "red", "nir")


def build_model(widths=WIDTHS, channels: int = 3):
    from geodetect.plugins.weights import import_tensorflow

    tf = import_tensorflow()
    L = tf.keras.layers

    def block(x, f, name):
        for i in (1, 2):
            x = L.Conv2D(f, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
            x = L.BatchNormalization(name=f"{name}_bn{i}")(x)
            x = L.ReLU(name=f"{name}_relu{i}")(x)
        return x

    w1, w2, w3 = widths
    inp = L.Input((None, None, channels), name="tiles")
    x = L.Rescaling(2.0, offset=-1.0, name="scale")(inp)
    e1 = block(x, w1, "enc1")
    e2 = block(L.MaxPooling2D(2, name="pool1")(e1), w2, "enc2")
    b = block(L.MaxPooling2D(2, name="pool2")(e2), w3, "bottom")
    d2 = L.UpSampling2D(2, interpolation="bilinear", name="up2")(b)
    d2 = block(L.Concatenate(name="skip2")([d2, e2]), w2, "dec2")
    d1 = L.UpSampling2D(2, interpolation="bilinear", name="up1")(d2)
    d1 = block(L.Concatenate(name="skip1")([d1, e1]), w1, "dec1")
    out = L.Conv2D(1, 1, activation="sigmoid", name="water")(d1)
    return tf.keras.Model(inp, out, name="water_unet")
