"""Data sets shipped inside the package."""
