"""Marquee training tools: preprocessing, the embedding model, manifest parsing, model export
and proxy-anchor training (train.py).

Run ``python -m training --help``.
"""
