"""Model builders: one small function per architecture, in the style of the keras.io examples.

`seed_*` reproduce the notebook this project grew from, layer for layer (128x128x3
input, pixels / 255). The improved models take one gray channel, standardise it
inside the model, use global average pooling instead of a huge Flatten-Dense,
and are narrow enough to train on a 2-core CPU.
"""

from __future__ import annotations

import keras
from keras import layers

# Rounded mean (0.513) and standard deviation (0.249) of the preprocessed train split of nih-cxr14-subset.
PIXEL_MEAN = 0.50
PIXEL_STD = 0.25


def build_seed_cnn(input_shape: tuple[int, int, int] = (128, 128, 3)) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, activation="relu", padding="valid")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.BatchNormalization()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="seed_cnn")


def _double_conv(x, filters: int, dropout: float = 0.0):
    for _ in range(2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    return layers.Dropout(dropout)(x) if dropout else x


def build_seed_unet(input_shape: tuple[int, int, int] = (128, 128, 3)) -> keras.Model:
    inputs = keras.Input(shape=input_shape)

    # Encoder: two conv+BN per block, then max-pooling; 128 -> 8 pixels.
    skips = []
    x = inputs
    for filters, dropout in ((32, 0.1), (64, 0.1), (128, 0.2), (256, 0.2)):
        x = _double_conv(x, filters, dropout)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    bottleneck = _double_conv(x, 512, 0.3)

    # Decoder: transposed conv up, concatenate the skip, two conv+BN; back to 32 filters.
    x = bottleneck
    for filters, skip in zip((256, 128, 64, 32), reversed(skips)):
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same")(x)
        x = layers.Concatenate()([x, skip])
        x = _double_conv(x, filters)

    # Classifier on pooled bottleneck + pooled last decoder block.
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(bottleneck), layers.GlobalAveragePooling2D()(x)])
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="seed_unet")


def _standardise(inputs):
    return layers.Rescaling(1.0 / PIXEL_STD, offset=-PIXEL_MEAN / PIXEL_STD)(inputs)


def build_cnn(input_shape: tuple[int, int, int] = (128, 128, 1), dropout: float = 0.3) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = _standardise(inputs)
    x = layers.Conv2D(32, 5, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    for filters in (32, 64, 128, 256):
        x = _double_conv(x, filters)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="cnn")


def build_unet(input_shape: tuple[int, int, int] = (128, 128, 1), base_filters: int = 16) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = _standardise(inputs)
    x = layers.Conv2D(base_filters, 5, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    # Encoder: 64 -> 8 pixels.
    skips = []
    widths = [base_filters * 2**level for level in range(3)]
    for filters in widths:
        x = _double_conv(x, filters)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    bottleneck = _double_conv(x, base_filters * 8, 0.2)

    # Decoder: back up to 64 pixels, pooling every level for the classifier.
    pooled = [layers.GlobalAveragePooling2D()(bottleneck)]
    x = bottleneck
    for filters, skip in zip(reversed(widths), reversed(skips)):
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same")(x)
        x = layers.Concatenate()([x, skip])
        x = _double_conv(x, filters)
        pooled.append(layers.GlobalAveragePooling2D()(x))

    x = layers.Concatenate()(pooled)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="unet")


def with_pooled_features(model: keras.Model, extra: dict | None = None) -> keras.Model:
    """The served form of a trained model: its disease probability plus the input of its final Dense layer
    (the pooled features the per-finding heads of `models.findings` read), and any `extra` outputs (tensors of
    the same graph, e.g. the feature maps of models.gradcam), all from the same forward pass."""
    outputs = {"disease": model.outputs[0], "pooled_features": model.layers[-1].input, **(extra or {})}
    return keras.Model(model.inputs[0], outputs, name=model.name)
