"""Models, datasets, the training engine and the one Ray Tune trainable every sweep uses."""
