"""meca: find backdoor-poisoned samples in an image folder and train a clean model on it."""

__version__ = "0.1.0"
