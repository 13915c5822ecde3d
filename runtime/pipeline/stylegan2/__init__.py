"""Compact StyleGAN2 (model, dataset tool, training, generation, ONNX export) written for this project."""
