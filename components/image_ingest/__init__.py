"""ImageExampleGen: image folders (IDC, class folders, CSV manifest) -> patient-grouped
tf.Example splits + ingest report."""
