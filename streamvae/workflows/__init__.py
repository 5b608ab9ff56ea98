"""Operator workflows over the layers: train, calibrate, evaluate, score, promote."""
