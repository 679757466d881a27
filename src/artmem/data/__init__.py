"""Collections, dataset readers, image loading, splits and the resized-image cache."""
