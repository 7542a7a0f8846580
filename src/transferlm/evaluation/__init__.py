"""Task metrics and their renderings."""
