"""radbatch command-line client."""
