"""Record sets: manifests, image loading, splits and the synthetic scene generator."""
