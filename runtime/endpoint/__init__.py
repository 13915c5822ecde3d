"""Stable Diffusion serving container for SageMaker (real-time and asynchronous endpoints)."""
