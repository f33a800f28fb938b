"""The ``torchslim`` command line."""
