"""The DICOM listener: a C-STORE SCP (pynetdicom) that answers C-ECHO and turns each association into a job.

`python -m listener` runs it (`make run` starts and supervises it). It stores files and creates rows only
through `ingest`, like every other entry point, and never imports `web`, `worker` or TensorFlow.
"""
