"""Trainer module package (its folder holds only the module file: TFX hashes the folder)."""
