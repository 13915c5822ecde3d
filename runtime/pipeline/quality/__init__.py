"""Quality gate of the StyleGAN2 pipeline: FID/KID against the training set with an uploaded feature extractor."""
