"""Generation: images drawn from captions (text to image), judged by the course's own models."""
