"""The ground floor: the data contract, every setting, the model card and its schema,
metrics, the decision rule and the magic-byte check. No TensorFlow, TFX or Beam
(import-linter's `ground-no-tensorflow` contract): the web app, the model server, the
components and the console verbs all import it, and the web image copies it whole."""
