"""Executors that run extraction over many videos into the store (local loop, Ray), and the demo."""
