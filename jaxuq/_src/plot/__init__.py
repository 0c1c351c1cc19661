"""Figures: the only package that imports matplotlib, and only when a figure is drawn."""
