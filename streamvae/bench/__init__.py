"""Benchmark code: the NAB corpus, the model-family experiments, pixel localisation."""
