"""Video fusion: decode and encode (io), faces over time (track), the frame loop (fuse)."""
