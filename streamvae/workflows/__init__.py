"""Workflows that combine the layers: train, calibrate, evaluate, promote, demo."""
