"""The package's version, in one place.

setup.py reads this file as text, so that building the package does not import it (and
TensorFlow with it).
"""

__version__ = "0.2.0"
