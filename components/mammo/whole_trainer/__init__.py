"""The mammography variant's whole-image Trainer module (its folder holds only the module
file: TFX hashes the folder)."""
