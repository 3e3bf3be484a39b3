"""Networks: the course UNet (blocks.py, unet.py) and the DeepFloyd IF adapter (deepfloyd/, optional)."""
