"""What every model shares: registered layers, losses and metrics, the image encoders, the
text encoder and the attention memory. Nothing here knows about a task."""
