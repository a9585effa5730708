"""Training support: loaders for real dataset formats.

One module per format (e.g. :mod:`geodetect.train.xview`).
"""
