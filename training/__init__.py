"""Training and evaluation of the chest X-ray classifiers on NIH ChestX-ray14-layout folders."""
