"""Keras callbacks: a tqdm progress bar and a wall-time budget."""

from __future__ import annotations

import time

import keras
from tqdm import tqdm


class TqdmProgress(keras.callbacks.Callback):
    """One bar over all epochs, showing the latest training and validation metrics."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.bar: tqdm | None = None

    def on_train_begin(self, logs=None):
        self.bar = tqdm(total=self.epochs, unit="epoch", desc="training")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in (logs or {}).items() if k != "learning_rate"})
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


class TimeBudget(keras.callbacks.Callback):
    """Stop after the first epoch that ends past the budget (slow models on a small CPU)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.started = 0.0

    def on_train_begin(self, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() - self.started > self.seconds:
            self.model.stop_training = True
