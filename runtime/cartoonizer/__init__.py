"""Cartoonizer runtime: White-box Cartoonization as one ONNX model, for images (Lambda) and videos (async endpoint)."""
