"""The networks behind the course's models: the UNet (unet.py) and its blocks (blocks.py)."""
