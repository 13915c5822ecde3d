"""StyleGAN2 training pipeline: step scripts run by SageMaker and by the local run."""
