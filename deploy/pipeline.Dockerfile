# The pipeline image: TFX 1.16 plus this project, installed, so every Kubeflow /
# Vertex step (and Dataflow worker, --sdk_container_image) imports the same
# `components.*` user code by module path. Built from the repository root:
#   docker build -f deploy/pipeline.Dockerfile -t $REGISTRY/breastdx-pipeline:$TAG .
FROM tensorflow/tfx:1.16.0

# Keras 2 (tf_keras) everywhere, as in every entry point (README); set before any import.
ENV TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pipeline.cluster_configs.ClusterConfig.image_project_dir: compiled pipelines refer
# to files of the source tree (the curated schema) under this folder.
WORKDIR /opt/breastdx

# The lock first, so a code change does not re-resolve dependencies.
COPY constraints.txt pyproject.toml README.md ./
COPY pipeline/ pipeline/
COPY components/ components/
COPY serving/ serving/
COPY webapp/ webapp/
COPY local_runner.py kubeflow_runner.py ./

# Editable: the package files stay in /opt/breastdx, where the compiled spec points.
RUN pip install --no-cache-dir -c constraints.txt -e . \
    && python -c "import components.trainer.trainer_module, components.transform.transform_module"
