"""Coreset distillers and a nearest-neighbour membership attack: an example privbench plugin package."""

__version__ = "0.1.0"
