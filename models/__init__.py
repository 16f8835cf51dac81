"""Model architectures, the shared preprocessing and the registry of trained models.

Importing this package never imports TensorFlow: only `models.architectures`
and `models.registry.load_model` do, so the web app can use `models.preprocess`.
"""
