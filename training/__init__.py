"""Marquee training tools: preprocessing, the embedding model, manifest parsing and model export.

Run ``python -m training --help``.
"""
