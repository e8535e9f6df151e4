"""Training and export of the default detector (the only part of imagery that imports torch)."""
