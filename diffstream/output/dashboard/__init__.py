"""output/dashboard."""
