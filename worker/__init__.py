"""The Celery worker: tasks carry image ids; workers decode, preprocess, predict and store results."""
