"""Discord bot that draws anime faces with the StyleGAN2 ONNX generator on CPU."""

from __future__ import annotations

__all__: list[str] = []
