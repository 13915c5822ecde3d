"""Container entry points of the StyleGAN2 step image (SageMaker's bring-your-own-container conventions)."""
