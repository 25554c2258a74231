"""segdemo: a Keras U-Net semantic segmentation demo with in-browser fine-tuning."""

__version__ = "0.1.0"
