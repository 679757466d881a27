"""Image measures (edge ratios, CNN symmetry, hue histogram, attributes) and memorability statistics."""
