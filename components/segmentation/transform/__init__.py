"""U-Net variant's transform module (its folder holds only the module file: TFX hashes the folder)."""
