"""DICOM objects radbatch writes (structured reports); no TensorFlow, no web or worker imports."""
