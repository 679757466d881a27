"""Training shared by every capability: the resumable `fit` loop (`artmem.training.loop`)."""
