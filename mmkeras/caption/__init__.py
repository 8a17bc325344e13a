"""Image captioning: the model and its decoders, training, decoding, metrics, export, resume."""
