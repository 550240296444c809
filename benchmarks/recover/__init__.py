"""Issue 16's recovery benchmark: the cell grid (``cells``), its table (``table``) and a quick check (``sanity``)."""
