"""ImageIngest: image folders (IDC, class folders, CSV manifest) -> TFRecords + report."""
