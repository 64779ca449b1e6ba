"""Training photos from public sources (iNaturalist), with their attribution: ``taxolens data``."""
