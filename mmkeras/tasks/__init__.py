"""The other multimodal tasks on the same data, encoders and run skeleton: visual question
answering and image-text matching (one fused classifier, eight fusions), and retrieval."""
