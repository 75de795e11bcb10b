"""U-Net variant's trainer module (its folder holds only the module file: TFX hashes the folder)."""
