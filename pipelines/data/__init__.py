"""Reading archives: object storage, the archive's inputs, Ray Data chunks, and what training reads of them."""
