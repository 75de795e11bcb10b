"""The `breastdx` console script (pyproject.toml: `breastdx_cli.main:main`): one module
per verb group (`main`: data, demo, summary and the list of every verb; `kfp` with
`kfp_auth`: pipeline and run verbs on Kubeflow / Vertex AI; `predict`; `lab`: compare,
report; `mammo`; `weights`). `serve` and `web` stay with their applications
(serving/cli.py, webapp/cli.py), which their images run without this package.
The top floor: nothing in the project imports it."""
