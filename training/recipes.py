"""Training recipes: the notebook's ("seed") recipe and the improved one."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Recipe:
    optimizer: str  # "adam" | "adamw"
    learning_rate: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    early_stopping_monitor: str  # a Keras log key computed on the validation split
    early_stopping_patience: int
    reduce_lr_patience: int | None  # halve the learning rate when the monitor stalls (validation only)
    augmentation: str  # "seed" | "improved"
    class_weighting: bool
    calibrate: bool  # Platt scaling fitted on validation
    threshold_rule: str  # "fixed-0.5" | "youden"

    def to_dict(self) -> dict:
        return asdict(self)


SEED_RECIPE = Recipe(
    optimizer="adam",
    learning_rate=1e-3,
    weight_decay=0.0,
    batch_size=16,
    max_epochs=30,
    early_stopping_monitor="val_loss",
    early_stopping_patience=5,
    reduce_lr_patience=None,
    augmentation="seed",
    class_weighting=False,
    calibrate=False,
    threshold_rule="fixed-0.5",
)

IMPROVED_RECIPE = Recipe(
    optimizer="adamw",
    learning_rate=1e-3,
    weight_decay=1e-4,
    batch_size=32,
    max_epochs=40,
    early_stopping_monitor="val_auc",
    early_stopping_patience=8,
    reduce_lr_patience=3,
    augmentation="improved",
    class_weighting=True,
    calibrate=True,
    threshold_rule="youden",
)

RECIPES = {"cnn": IMPROVED_RECIPE, "unet": IMPROVED_RECIPE, "seed-cnn": SEED_RECIPE, "seed-unet": SEED_RECIPE}


def augmentation_layers(kind: str):
    """Random train-time augmentation; the seed kind is the notebook's ImageDataGenerator settings."""
    from keras import Sequential, layers

    if kind == "seed":
        return Sequential(
            [
                layers.RandomRotation(10 / 360, fill_mode="constant"),
                layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
                layers.RandomZoom(0.1, fill_mode="constant"),
                layers.RandomFlip("horizontal"),
            ],
            name="seed_augmentation",
        )
    # No flips: a radiograph has a handedness (heart on the left), and a flip makes a different anatomy.
    return Sequential(
        [
            layers.RandomRotation(7 / 360, fill_mode="constant"),
            layers.RandomTranslation(0.06, 0.06, fill_mode="constant"),
            layers.RandomZoom((-0.1, 0.1), fill_mode="constant"),
            layers.RandomContrast(0.2, value_range=(0.0, 1.0)),
            layers.RandomBrightness(0.1, value_range=(0.0, 1.0)),
        ],
        name="augmentation",
    )
