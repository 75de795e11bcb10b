"""The mammography variant's patch Trainer module (its folder holds only the module file: TFX hashes the folder)."""
