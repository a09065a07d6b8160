"""The HTTP API function: presigned uploads, status documents and listings, per owner."""
