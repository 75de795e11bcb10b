"""Custom TFX components and the module files TFX's Transform and Trainer load."""
