"""Figures: labelled image grids, GIFs and curves (grid.py); Part B's training figures (part_b.py), which sample
the model being trained and so sit above the algorithms."""
