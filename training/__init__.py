"""VisionAssist Training: tiny pupil-segmentation models for real-time eye tracking."""

__version__ = "0.1.0"
