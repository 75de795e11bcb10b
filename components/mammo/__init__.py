"""The mammography (CBIS-DDSM) pipeline variant's components and module files.

`pipeline.pipeline.create_mammography_pipeline` wires them:

    CbisExampleGen (patches + mammograms) -> PatchTrainer (patch_trainer/)
      -> Trainer (whole_trainer/, warm-started from the patch model) -> Evaluator -> Pusher

`records` is the one decode path (training and every signature); `export` writes the
SavedModels and their cards.
"""
