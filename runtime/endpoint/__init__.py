"""Stable Diffusion serving container for SageMaker (real-time and asynchronous endpoints)."""

from __future__ import annotations

import os

# The hub libraries read these once, when first imported; this package runs before any of its modules imports
# diffusers or transformers, so the serving process never reaches a model hub (an explicit value still wins).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Needed before CUDA starts for torch.use_deterministic_algorithms (requests with "deterministic": true).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
