"""What ``line_crossing`` and ``zones`` share: per-stream analytics over tracked boxes."""
