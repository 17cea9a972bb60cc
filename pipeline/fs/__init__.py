"""Storage access: URLs to filesystems, listing, reading bytes, counting retries, and turning
storage failures into one-line errors. fsspec lives here."""
