"""Training support shared by the trainable models: crops, the loop, the CLI."""
